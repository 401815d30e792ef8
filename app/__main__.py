"""`python -m app ...` entry point."""

import os
import sys

# Idle OpenMP threads that spin steal the few cores from the other pools (torch, FAISS, the
# web server). OpenMP reads this once, when torch loads (serve, and the model commands).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if __name__ == "__main__":
    from app.interrupt import report_interrupt

    try:
        if sys.argv[1:2] == ["serve"] and not {"-h", "--help"} & set(sys.argv[2:]):
            # Before the imports below (seconds): the detection process loads meanwhile.
            from app.services.early_start import start_detection_early

            start_detection_early()
        from app.cli import main
    except KeyboardInterrupt:
        # Ctrl-C before main() runs, which says it in one line from then on: the same line
        # and status here, not a traceback through the imports it happened to land in.
        raise SystemExit(report_interrupt(sys.argv[1:])) from None
    raise SystemExit(main())
