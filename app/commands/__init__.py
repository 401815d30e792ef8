"""Subcommands of `python -m app` beyond serving: import, evaluate, calibrate."""
