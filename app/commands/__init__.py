"""Offline subcommands of `python -m app`: evaluate and calibrate on local photo sets."""
