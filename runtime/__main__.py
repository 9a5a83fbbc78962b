"""`python -m serveplane.runtime head|worker ...` (see entrypoint.py), or `... redis-cleanup` (redis_cleanup.py)."""
import sys

if sys.argv[1:2] == ["redis-cleanup"]:
    from .redis_cleanup import main as cleanup

    raise SystemExit(cleanup())

from .entrypoint import main

raise SystemExit(main())
