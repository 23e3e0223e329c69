"""`pql notify`'s Prometheus metrics, in a registry of their own (served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.metrics import sample_names

# occurred_at -> delivered: event time to a person's screen. Minutes to hours matter here (the
# playbooks' urgencies are hours), seconds for the live path.
SLA_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
PIPELINE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.delivered = Counter(
            "pql_notify_delivered",
            "Transitions the destination accepted (2xx), once per transition and destination.",
            ["destination"],
            registry=r,
        )
        self.failed = Counter(
            "pql_notify_failed",
            "Transitions given up on and sent to the dead-letter topic, by reason "
            "(attempts: every attempt failed; rejected: a 4xx that no retry can fix; "
            "invalid: not a transition).",
            ["destination", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "pql_notify_retries",
            "Attempts that failed and were retried, by cause (timeout, connection, status_429, "
            "status_5xx...).",
            ["destination", "cause"],
            registry=r,
        )
        self.skipped = Counter(
            "pql_notify_skipped",
            "Transitions not sent: duplicate (a transition_id already delivered) or not_routed "
            "(no rule sends it to this destination).",
            ["destination", "reason"],
            registry=r,
        )
        self.sla_seconds = Histogram(
            "pql_notify_sla_seconds",
            "From the transition's occurred_at (event time) to its delivery: what the "
            "playbook's respond-by deadlines are measured against.",
            ["destination"],
            buckets=SLA_BUCKETS,
            registry=r,
        )
        self.pipeline_seconds = Histogram(
            "pql_notify_pipeline_seconds",
            "From the transition's detected_at (when the worker decided it) to its delivery.",
            ["destination"],
            buckets=PIPELINE_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "pql_notify_lag_messages",
            "Transitions on the topic not yet handled by this destination, per partition.",
            ["destination", "partition"],
            registry=r,
        )
        self.up = Gauge(
            "pql_notify_destination_up",
            "1 while the destination's last attempt succeeded, 0 after a failed one.",
            ["destination"],
            registry=r,
        )

    def sample_names(self) -> frozenset[str]:
        """Every series name it can expose (the monitoring tests check names against it)."""
        return sample_names(self.registry)
