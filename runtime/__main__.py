"""`python -m serveplane.runtime head|worker ...` (see entrypoint.py), `... redis-cleanup` (redis_cleanup.py), or
`... autoscaler` (autoscaler.py, beside the head)."""
import sys

if sys.argv[1:2] == ["autoscaler"]:
    from .autoscaler import main as autoscale

    raise SystemExit(autoscale())

if sys.argv[1:2] == ["redis-cleanup"]:
    from .redis_cleanup import main as cleanup

    raise SystemExit(cleanup())

from .entrypoint import main

raise SystemExit(main())
