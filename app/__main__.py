"""`python -m app ...` entry point."""

from app.cli import main

raise SystemExit(main())
