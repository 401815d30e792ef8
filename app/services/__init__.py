"""Use cases that combine the pipeline, the gallery and the index."""
