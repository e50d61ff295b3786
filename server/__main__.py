"""`python -m server serve ...` (also installed as `step-realtime`)."""

from server.cli import main

raise SystemExit(main())
