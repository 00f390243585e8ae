"""Prometheus metrics of one server instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deeplens_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "deeplens_request_seconds",
            "Request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "deeplens_batch_size",
            "Images per semantic model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.errors = Counter("deeplens_errors", "Errors by kind", ["kind"], registry=self.registry)
        self.images = Counter("deeplens_images", "Images processed", ["route"], registry=self.registry)
        self.verify_features = Counter(
            "deeplens_verify_features", "Images prepared for verification, by where their features came from",
            ["source"], registry=self.registry,
        )
