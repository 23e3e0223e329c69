"""The metric-name extractor the dashboard/alert tests rely on must actually find names,
otherwise 'every name exists' would pass vacuously."""

from __future__ import annotations

from .conftest import metric_names


def test_extracts_names_and_ignores_functions_labels_and_strings() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, topic) (rate(pql_processing_latency_seconds_bucket"
        '{job=~"pql_fake_in_string", instance=~".*"}[5m]))) / on (job) group_left () '
        "up == bool 1 and time() - pql_last_commit_timestamp_seconds > 300 # pql_in_comment"
    )
    assert metric_names(expr) == {
        "pql_processing_latency_seconds_bucket",
        "up",
        "pql_last_commit_timestamp_seconds",
    }


def test_typo_is_visible(known_series: frozenset[str]) -> None:
    names = metric_names("sum(rate(pql_event_consumed_total[5m]))")
    assert names == {"pql_event_consumed_total"}
    assert not names <= known_series
