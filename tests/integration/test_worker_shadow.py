"""A shadow model beside the live one, then promoted, on real Apache Kafka (README "Changing
your model"): the worker started with `--shadow v4.yaml` runs v4 over every account from the
stream time it agreed (logged); its transitions go to `<output>-shadow` and equal a backtest of
v4 (the shadow started before any event: the candidate over the whole history), while the live
topic stays v3's. Writing v4 into the model file promotes it: one switch, the shadow's decisions
taken as they are, the same process. Both topics equal
`pql backtest --shadow S=v4.yaml --switch-model T=v4.yaml`. A second shadow (v5) runs beside
them until `pql shadow stop` stops it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.broker.kafka import KafkaBroker
from streams.cli import main
from streams.scoring.transitions import iso_ms
from tests.integration.test_worker_model_change import V3, V4, _scenario, _switch_time, _wait_log
from tests.integration.worker_harness import (
    WorkerProc,
    Workers,
    assert_same_as_backtest,
    backtest,
    collect,
    metric_samples,
    produce,
    produce_in_background,
    transition_key,
    wait_consumed,
    workers,  # noqa: F401 - fixture
)

V5 = V4.replace("version: 4 ", "version: 5 ").replace('when: "score >= 70"', 'when: "score >= 50"')


@pytest.fixture()
def broker(session_kafka_broker: KafkaBroker) -> KafkaBroker:
    return session_kafka_broker


def _shadow_time(w: WorkerProc, version: int, timeout: float = 60) -> int:
    found = w.wait_log(rf"shadow team-chat v{version} runs from stream time (\d+)", timeout)
    return int(found.group(1))


def test_a_shadow_equals_a_backtest_of_the_candidate_and_its_promotion_the_backtest_too(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap = workers.bootstrap
    parts, third, names, reader = _scenario(workers, tmp_path, "shadow")
    model = tmp_path / "model.yaml"
    model.write_text(V3)
    candidate = tmp_path / "v4.yaml"
    candidate.write_text(V4)
    other = tmp_path / "v5.yaml"
    other.write_text(V5)
    w = workers.start(model, names, extra_args=["--shadow", str(candidate), "--shadow", str(other)])
    assert w.proc is not None
    pid = w.proc.pid
    s_at = _shadow_time(w, 4)
    _shadow_time(w, 5)
    pql = ["--broker", bootstrap, "--app-id", names.app_id]
    listed = CliRunner().invoke(main, ["shadow", "list", *pql])
    assert listed.exit_code == 0, listed.output
    assert "live: team-chat v3" in listed.output and "shadow: team-chat v5" in listed.output
    shadow_reader = workers.reader(f"{names.output_topic}-shadow")
    produce(bootstrap, names.input_topic, parts[0])
    wait_consumed([w], names.input_topic, third, 60)
    stopped = CliRunner().invoke(main, ["shadow", "stop", *pql, "5"])
    assert stopped.exit_code == 0, stopped.output
    _wait_log(w, "shadow team-chat v5 stopped")
    listed = CliRunner().invoke(main, ["shadow", "list", *pql])
    assert "stopped: v5" in listed.output and "shadow: team-chat v4" in listed.output
    again = CliRunner().invoke(main, ["shadow", "stop", *pql, "5"])
    assert again.exit_code != 0 and "no shadow of version 5 runs" in again.output
    flowing = produce_in_background(bootstrap, names.input_topic, parts[1], rate=third / 6)
    time.sleep(1)
    model.write_text(V4)  # the promotion (the file is polled every second)
    t_at = _switch_time([w])
    flowing.join(60)
    produce(bootstrap, names.input_topic, parts[2])

    shadow_out = tmp_path / "shadow.jsonl"
    v3 = tmp_path / "v3.yaml"
    v3.write_text(V3)
    expected = backtest(
        v3,
        *parts,
        out_dir=tmp_path,
        extra=[
            "--shadow",
            f"{iso_ms(s_at)}={candidate}",
            "--switch-model",
            f"{iso_ms(t_at)}={candidate}",
            "--shadow-out",
            str(shadow_out),
        ],
    )
    expected_shadow = [json.loads(line) for line in shadow_out.read_text().splitlines()]
    got = collect(reader, expected, timeout=120, settle=w.settle)
    assert_same_as_backtest(got, expected)
    got_shadow = [
        t
        for t in collect(shadow_reader, expected_shadow, timeout=60, settle=w.settle)
        if t["model"]["version"] == 4  # v5's end is where the stop found each partition
    ]
    assert_same_as_backtest(got_shadow, expected_shadow, label="shadow")
    assert got_shadow and {t["model"]["version"] for t in got_shadow} == {4}
    assert all(t["occurred_at"] < iso_ms(t_at) for t in got_shadow), "the shadow outlived it"
    # Started before any event: the shadow is the candidate over the history (until promoted).
    alone = backtest(candidate, *parts, out_dir=tmp_path)
    assert {transition_key(t) for t in got_shadow} == {
        transition_key(t) for t in alone if t["occurred_at"] < iso_ms(t_at)
    }
    # The live topic was v3's until the promotion, v4's after it.
    assert {t["model"]["version"] for t in got if t["occurred_at"] < iso_ms(t_at)} == {3}
    assert any(t["trigger"] == "model_change" for t in got)
    assert w.running and w.proc.pid == pid, "the promotion restarted the worker"
    samples = metric_samples(w.metrics(), "pql_shadow_transitions_total")
    sent = sum(v for labels, v in samples.items() if 'version="4"' in labels)
    assert sent == len(got_shadow), samples  # every record sent, re-emits included
    assert not metric_samples(w.metrics(), "pql_shadow_running"), "a promoted shadow still runs"
