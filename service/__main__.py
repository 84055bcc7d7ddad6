"""`python -m service` behaves like the `skinscreen` console script."""

from service.cli import main

raise SystemExit(main())
