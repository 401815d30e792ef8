"""Prometheus metrics, one registry per app so tests never share state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "face_http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "face_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.inference = Histogram(
            "face_inference_seconds",
            "Time spent in model inference by stage.",
            ["stage"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.batch_sizes = Histogram(
            "face_batch_items",
            "Items (images for detect, faces for embed) per shared forward pass.",
            ["lane"],
            registry=self.registry,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
        )
        self.faces_enrolled = Gauge(
            "face_faces_enrolled", "Faces stored in the gallery.", registry=self.registry
        )
        self.subjects = Gauge(
            "face_subjects", "Subjects stored in the gallery.", registry=self.registry
        )
        self.index_size = Gauge(
            "face_index_size", "Vectors in the active FAISS index.", registry=self.registry
        )
        self.index_synced = Counter(
            "face_index_synced_faces_total",
            "Faces the index took from the database (added) or dropped (removed) because "
            "another process sharing it enrolled or deleted them.",
            ["change"],
            registry=self.registry,
        )
        self.pixels_in_flight = Gauge(
            "face_image_pixels_in_flight",
            "Decoded image pixels that running requests hold (FACE_MAX_PIXELS_IN_FLIGHT).",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "face_rate_limited_total",
            "Requests refused with 429 over FACE_RATE_LIMIT, by the role of their key, or over "
            "FACE_AUTH_FAILURE_LIMIT (role unauthenticated).",
            ["role"],
            registry=self.registry,
        )
        self.pixel_waits = Counter(
            "face_pixel_budget_waits_total",
            "Requests that waited for earlier ones' images to fit in the pixel budget.",
            registry=self.registry,
        )

    # PipelineObserver (app/pipeline/analyzer.py)
    def stage_seconds(self, stage: str, seconds: float) -> None:
        self.inference.labels(stage).observe(seconds)

    def batch_items(self, lane: str, items: int) -> None:
        self.batch_sizes.labels(lane).observe(items)

    def render(self) -> bytes:
        return generate_latest(self.registry)
