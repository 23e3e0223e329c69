"""The funnel, live (issue 16 item 2): a worker with --signup-event, --conversion-event and
--revenue-property over simulated history with known converters counts what the backtest's
funnel says: accounts entered, first qualifications, conversions of PQLs and of the rest, their
revenue, one time to PQL per PQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.worker_harness import (
    EXAMPLES,
    WorkerNames,
    Workers,
    metric_samples,
    produce,
    wait_consumed,
    workers,  # noqa: F401 - fixture
)
from tests.unit.backtest.test_report import history

MODEL = EXAMPLES / "team-chat.yaml"


def test_worker_funnel_metrics(broker: Any, workers: Workers, tmp_path: Path) -> None:  # noqa: F811
    from streams.backtest.replay import run_backtest
    from streams.model.loader import load_model

    events, converters = history(tmp_path)
    expected = run_backtest(
        load_model(MODEL),
        [events],
        conversion_event="Subscription Started",
        signup_event="Signed Up",
        revenue_property="mrr",
        received_by_ms=None,
    )["funnel"]
    names = WorkerNames.unique("funnel")
    names.create_topics(workers.bootstrap)
    w = workers.new(MODEL, names, name="funnel")
    w.env.update(
        {
            "PQL_SIGNUP_EVENT": "Signed Up",
            "PQL_CONVERSION_EVENT": "Subscription Started",
            "PQL_REVENUE_PROPERTY": "mrr",
        }
    )
    w.start().wait_ready()
    lines = produce(workers.bootstrap, names.input_topic, events).read
    wait_consumed([w], names.input_topic, lines, timeout=90)

    def metric(name: str, labels: str = "") -> float:
        return metric_samples(w.metrics(), name).get(labels, 0.0)

    conv, revenue = expected["conversion"], expected["revenue"]
    want = {
        "entered": expected["accounts_entered"],
        "first": expected["pqls"],
        "pql": conv["pql"]["converted"],
        "non": conv["non_pql"]["converted"],
        "rev_pql": revenue["pql"]["total"],
        "rev_non": revenue["non_pql"]["total"],
    }
    got: dict[str, float] = {}
    for _ in range(60):  # the last flush may be under way
        got = {
            "entered": metric("pql_funnel_entered_total"),
            "first": metric("pql_funnel_first_pqls_total"),
            "pql": metric("pql_funnel_conversions_total", '{pql="true"}'),
            "non": metric("pql_funnel_conversions_total", '{pql="false"}'),
            "rev_pql": metric("pql_funnel_revenue_total", '{pql="true"}'),
            "rev_non": metric("pql_funnel_revenue_total", '{pql="false"}'),
        }
        if got == want:
            break
        time.sleep(0.5)
    assert got == want, (got, want)
    assert want["pql"] + want["non"] == len(converters) and want["first"] > 5
    assert metric("pql_funnel_time_to_pql_seconds_count") == want["first"]
    assert metric("pql_funnel_lead_time_seconds_count") == want["pql"]
