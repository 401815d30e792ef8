"""Face pipeline: decode, detect, align, assess quality, embed."""
