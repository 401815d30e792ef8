"""Offline verification and identification metrics for evaluating embedders."""
