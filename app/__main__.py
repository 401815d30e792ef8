"""`python -m app ...` entry point."""

import os

# Idle OpenMP threads that spin steal the few cores from the other pools (torch, FAISS, the
# web server). OpenMP reads this once, when torch loads, and importing app.cli loads torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from app.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
