"""Unit tests of ``streams.metrics``: the names are a contract with the dashboard and alerts,
and the exposition must be what Prometheus' own linter (``promtool check metrics``) accepts."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import CONTENT_TYPE, LATENCY_BUCKETS, Metrics

# Metric family name -> (type, label names). The dashboard and alert rules depend on these.
EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "pql_consumer_lag_messages": ("gauge", ("topic", "partition")),
    "pql_consumer_lag_seconds": ("gauge", ("topic", "partition")),
    "pql_events_consumed": ("counter", ("topic",)),
    "pql_events_processed": ("counter", ()),
    "pql_events_rejected": ("counter", ("reason",)),
    "pql_dlq_produced": ("counter", ("reason",)),
    "pql_late_events": ("counter", ("outcome",)),
    "pql_duplicate_events": ("counter", ()),
    "pql_clock_skew_events": ("counter", ("outcome",)),
    "pql_held_events": ("gauge", ("stage",)),
    "pql_paused_input_partitions": ("gauge", ()),
    "pql_transitions": ("counter", ("kind", "segment")),
    "pql_funnel_entered": ("counter", ()),
    "pql_funnel_first_pqls": ("counter", ()),
    "pql_funnel_conversions": ("counter", ("pql",)),
    "pql_funnel_revenue": ("counter", ("pql",)),
    "pql_funnel_time_to_pql_seconds": ("histogram", ()),
    "pql_funnel_lead_time_seconds": ("histogram", ()),
    "pql_pql_accounts": ("gauge", ()),
    "pql_segment_accounts": ("gauge", ("segment",)),
    "pql_processing_latency_seconds": ("histogram", ()),
    "pql_end_to_end_latency_seconds": ("histogram", ()),
    "pql_state_accounts": ("gauge", ()),
    "pql_state_bytes": ("gauge", ()),
    "pql_rebalances": ("counter", ()),
    "pql_recovery_in_progress": ("gauge", ()),
    "pql_state_restored_records": ("counter", ("table",)),
    "pql_worker_ready": ("gauge", ()),
    "pql_broker_reachable": ("gauge", ()),
    "pql_last_commit_timestamp_seconds": ("gauge", ()),
    "pql_watermark_timestamp_seconds": ("gauge", ()),
    "pql_model": ("info", ("name", "version", "fingerprint")),
    "pql_model_effective_from_seconds": ("gauge", ()),
    "pql_model_switch_pending": ("gauge", ()),
    "pql_model_reloads": ("counter", ("result",)),
    "pql_shadow_running": ("gauge", ("version",)),
    "pql_shadow_transitions": ("counter", ("version", "kind", "segment")),
    "pql_shadow_start_accounts": ("counter", ("version",)),
    "pql_backfill_records": ("counter", ("version",)),
    "pql_backfill_caught_up": ("gauge", ("version",)),
    "pql_partial_signals": ("gauge", ("signal",)),
    "pql_model_switch_accounts": ("counter", ()),
    "pql_model_switch_seconds": ("histogram", ()),
}


def promtool() -> str:
    """Path of promtool; a missing binary is a failure, never a skip (CI must run it)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `make tools` (Debian package `prometheus`)")
    return path


def populated() -> Metrics:
    """A Metrics with a value in every collector, so every family renders samples."""
    m = Metrics()
    m.consumer_lag_messages.labels("events", "0").set(12)
    m.consumer_lag_seconds.labels("events", "0").set(3.5)
    m.events_consumed_total.labels("events").inc(10)
    m.events_processed_total.inc(9)
    m.events_rejected_total.labels("schema").inc()
    m.dlq_produced_total.labels("schema").inc()
    m.late_events_total.labels("applied").inc(2)
    m.late_events_total.labels("rejected").inc()
    m.duplicate_events_total.inc()
    m.clock_skew_events_total.labels("clamped").inc()
    m.funnel_conversions_total.labels("true").inc()
    m.funnel_revenue_total.labels("false").inc(49)
    m.held_events.labels("accounts").set(7)
    m.paused_partitions.set(1)
    m.transitions_total.labels("pql_entered", "").inc()
    m.transitions_total.labels("segment_entered", "power_user").inc()
    m.pql_accounts.set(4)
    m.segment_accounts.labels("power_user").set(2)
    m.processing_latency_seconds.observe(0.02)
    m.end_to_end_latency_seconds.observe(1.7)
    m.state_accounts.set(100)
    m.state_bytes.set(4096)
    m.rebalances_total.inc()
    m.recovery_in_progress.set(0)
    m.state_restored_records_total.labels("accounts").inc(20)
    m.worker_ready.set(1)
    m.last_commit_timestamp_seconds.set(1_790_000_000)
    m.watermark_timestamp_seconds.set(1_790_000_000)
    m.set_model("pql-default", "3", "sha256:abcd")
    m.model_reloads_total.labels("announced").inc()
    m.model_switch_accounts_total.inc(3)
    m.model_switch_seconds.observe(0.2)
    m.set_shadows({"4", "5"})
    m.set_shadows({"5"})  # v4 promoted or ended: no longer reported
    m.shadow_transitions_total.labels("5", "qualified", "").inc()
    m.shadow_start_accounts_total.labels("5").inc(7)
    m.backfill_records_total.labels("6").inc(1000)
    m.set_backfill("6", caught_up=False)
    m.set_partial_signals({"uploads", "messages"})
    m.set_partial_signals({"uploads"})  # messages filled: no longer reported
    return m


def families(m: Metrics) -> dict[str, object]:
    text = m.render().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_every_metric_renders_with_type_and_labels() -> None:
    fams = families(populated())
    for family_name, (mtype, labels) in EXPECTED.items():
        # The 0.0.4 text format has no `info` type: it is written as a gauge named `<name>_info`.
        name, mtype = (family_name + "_info", "gauge") if mtype == "info" else (family_name, mtype)
        assert name in fams, f"{name} missing from exposition"
        fam = fams[name]
        assert fam.type == mtype, (name, fam.type)  # type: ignore[attr-defined]
        samples = fam.samples  # type: ignore[attr-defined]
        assert samples, f"{name} has no samples"
        for s in samples:
            own = {k for k in s.labels if k != "le"}
            assert own == set(labels), (name, s.labels)
    # The Info metric carries the model identity as labels with value 1.
    running = fams["pql_shadow_running"].samples  # type: ignore[attr-defined]
    assert [(r.labels, r.value) for r in running] == [({"version": "5"}, 1.0)]
    partial = fams["pql_partial_signals"].samples  # type: ignore[attr-defined]
    assert [(r.labels, r.value) for r in partial] == [({"signal": "uploads"}, 1.0)]
    info = fams["pql_model_info"].samples  # type: ignore[attr-defined]
    assert info[0].labels == {"name": "pql-default", "version": "3", "fingerprint": "sha256:abcd"}
    assert info[0].value == 1


def test_no_unexpected_families_and_naming_conventions() -> None:
    m = populated()
    names = {f.name for f in m.registry.collect()}
    assert names == set(EXPECTED)
    for fam in m.registry.collect():
        assert re.fullmatch(r"pql_[a-z][a-z0-9_]*", fam.name), fam.name
        assert fam.documentation, f"{fam.name} has no HELP"
        if fam.type == "counter":
            # prometheus-client strips `_total` from the family and adds it to the sample.
            assert {s.name for s in fam.samples if not s.name.endswith("_created")} <= {
                fam.name + "_total"
            }
        if fam.type in ("histogram",) or "latency" in fam.name or "timestamp" in fam.name:
            assert fam.name.endswith("_seconds"), f"{fam.name}: time in base unit seconds"
        if "bytes" in fam.name:
            assert fam.name.endswith("_bytes")


def test_sample_names_cover_exposed_series() -> None:
    m = populated()
    exposed = {s.name for f in m.registry.collect() for s in f.samples}
    assert exposed <= m.sample_names()
    assert "pql_events_consumed_total" in m.sample_names()
    assert "pql_processing_latency_seconds_bucket" in m.sample_names()
    assert "pql_model_info" in m.sample_names()
    assert "pql_events_consumed" not in m.sample_names()


def test_latency_buckets_cover_subsecond_to_minutes() -> None:
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    assert sum(1 for b in LATENCY_BUCKETS if b < 1) >= 5
    assert max(LATENCY_BUCKETS) >= 300
    fams = families(populated())
    les = [
        s.labels["le"]
        for s in fams["pql_end_to_end_latency_seconds"].samples  # type: ignore[attr-defined]
        if s.name.endswith("_bucket")
    ]
    assert les[-1] == "+Inf" and len(les) == len(LATENCY_BUCKETS) + 1
    # 1.7 s falls in the 2.5 s bucket but not the 1 s one.
    by_le = {
        s.labels["le"]: s.value
        for s in fams["pql_end_to_end_latency_seconds"].samples  # type: ignore[attr-defined]
        if s.name.endswith("_bucket")
    }
    assert by_le["1.0"] == 0 and by_le["2.5"] == 1


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.events_processed_total.inc(5)
    assert b"pql_events_processed_total 0.0" in b.render()
    assert b"pql_events_processed_total 5.0" in a.render()


def test_lag_seconds_grows_without_events_and_ignores_late_events() -> None:
    m = Metrics()
    m.record_event_time("events", 1, 1000.0)
    m.refresh_lag_seconds(now=1010.0)
    assert (
        m.registry.get_sample_value(
            "pql_consumer_lag_seconds", {"topic": "events", "partition": "1"}
        )
        == 10.0
    )
    m.record_event_time("events", 1, 900.0)  # late event: must not move lag backwards in time
    m.refresh_lag_seconds(now=1070.0)
    assert (
        m.registry.get_sample_value(
            "pql_consumer_lag_seconds", {"topic": "events", "partition": "1"}
        )
        == 70.0
    )
    m.record_event_time("events", 1, 2000.0)  # producer clock ahead: clamp at 0
    m.refresh_lag_seconds(now=1999.0)
    assert (
        m.registry.get_sample_value(
            "pql_consumer_lag_seconds", {"topic": "events", "partition": "1"}
        )
        == 0.0
    )
    m.forget_partition("events", 1)
    m.refresh_lag_seconds(now=3000.0)
    assert (
        m.registry.get_sample_value(
            "pql_consumer_lag_seconds", {"topic": "events", "partition": "1"}
        )
        is None
    )


def test_set_consumer_lag_drops_revoked_partitions() -> None:
    from dataclasses import dataclass

    @dataclass
    class Row:
        topic: str
        partition: int
        lag: int

    m = Metrics()
    m.set_consumer_lag([Row("events", 0, 5), Row("events", 1, 7)])
    get = m.registry.get_sample_value
    assert get("pql_consumer_lag_messages", {"topic": "events", "partition": "1"}) == 7
    m.set_consumer_lag([Row("events", 0, 0)])
    assert get("pql_consumer_lag_messages", {"topic": "events", "partition": "0"}) == 0
    assert get("pql_consumer_lag_messages", {"topic": "events", "partition": "1"}) is None


def test_content_type_matches_rendered_format() -> None:
    assert CONTENT_TYPE.startswith("text/plain")
    assert "version=0.0.4" in CONTENT_TYPE
    assert populated().render().startswith(b"# HELP ")


def test_promtool_check_metrics_accepts_exposition() -> None:
    text = populated().render()
    proc = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    out = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, out
    # promtool exits 0 on lint warnings too in some versions: require no findings at all.
    assert out.strip() == "", out


def test_promtool_rejects_broken_exposition() -> None:
    """Guard that the check above can fail: promtool must reject a malformed exposition."""
    bad = populated().render() + b"pql_bad{ 1\n"
    proc = subprocess.run(
        [promtool(), "check", "metrics"], input=bad, capture_output=True, timeout=60
    )
    assert proc.returncode != 0
