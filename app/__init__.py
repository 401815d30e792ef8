"""Self-hosted face detection, verification and identification service."""
