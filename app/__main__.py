"""`python -m app ...` entry point."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
