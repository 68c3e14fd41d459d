"""Prometheus collectors, on a registry of their own per server (tests run several side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)
REFUSED_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1)
HAND_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("imgclf_requests_total", "Requests by route, protocol and status",
                                ["route", "protocol", "status"], registry=r)
        self.latency = Histogram("imgclf_request_latency_seconds", "Request latency",
                                 ["route", "protocol"], buckets=LATENCY_BUCKETS, registry=r)
        # from the request's first byte to its 429 written: the server's share of what a client sees
        self.refused = Histogram("imgclf_refused_seconds", "Requests refused from their head (429): first "
                                 "byte to reply", buckets=REFUSED_BUCKETS, registry=r)
        per_version = ["model", "version"]
        self.images = Counter("imgclf_images_total", "Images classified", per_version, registry=r)
        self.batch_size = Histogram("imgclf_batch_size", "Images per model call", per_version,
                                    buckets=BATCH_BUCKETS, registry=r)
        self.model_calls = Counter("imgclf_model_calls_total", "Model calls (batches)", per_version,
                                   registry=r)
        self.answers = Counter("imgclf_answers_total", "Images answered, by what answered: pose (a hand was "
                               "found and the version's pose classifier answered) or cnn", [*per_version, "path"],
                               registry=r)
        self.hand_seconds = Histogram("imgclf_hand_stage_seconds", "The hand stage's time per picture (decode, "
                                      "palm detection, landmarks, retries)", buckets=HAND_BUCKETS, registry=r)
        self.queue_depth = Gauge("imgclf_queue_depth", "Images waiting for a batch", per_version,
                                 registry=r)
        self.version_state = Gauge("imgclf_model_version_state",
                                   "1 for the state each version is in", [*per_version, "state"],
                                   registry=r)
        self.runtime = Gauge("imgclf_model_runtime", "1 for the runtime answering each available version "
                             "(tensorflow, litert, litert-float, tfserving)", [*per_version, "runtime"], registry=r)
        self.load_failures = Counter("imgclf_model_load_failures_total",
                                     "Versions that failed to load or warm up", per_version,
                                     registry=r)
        self.load_seconds = Histogram("imgclf_model_load_seconds", "Load plus warm-up time",
                                      buckets=(0.5, 1, 2, 5, 10, 30, 60, 120), registry=r)

    def record_batch(self, model: str, version: int, size: int) -> None:
        self.batch_size.labels(model, str(version)).observe(size)
        self.model_calls.labels(model, str(version)).inc()
        self.images.labels(model, str(version)).inc(size)

    def set_state(self, model: str, version: int, state: str, states: tuple[str, ...]) -> None:
        for s in states:
            self.version_state.labels(model, str(version), s).set(1 if s == state else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
