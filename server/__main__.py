"""`python -m server serve ...`."""

from server.cli import main

raise SystemExit(main())
