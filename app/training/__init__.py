"""Model-agnostic fine-tuning core: margin heads, accumulation loop and checkpoints."""
