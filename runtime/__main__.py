"""`python -m serveplane.runtime head|worker ...`: see entrypoint.py."""
from .entrypoint import main

raise SystemExit(main())
