"""A SASL_SSL listener on real Kafka (SCRAM-SHA-512; a CA and broker certificate this module
generates): the worker, `pql produce`, `pql tail` and `pql lag` connect with the `PQL_*`
security settings and give `pql backtest`'s transitions; a wrong password or a certificate
signed by another CA fails fast, once, with a message that says which."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from streams.broker.kafka import KafkaBroker
from streams.io.simulate import generate
from streams.io.topics import TopicSpec, ensure_topics
from tests.integration.worker_harness import (
    EXAMPLES,
    PARTITIONS,
    REPO,
    WorkerNames,
    Workers,
    backtest,
    name_accounts,
    transition_key,
    write_jsonl,
)

MODEL = EXAMPLES / "team-chat.yaml"
USER, PASSWORD = "pql-worker", "correct horse battery staple"
# A failure that cannot be retried away must be reported well within this (no timeouts).
FAST_S = 15.0


@dataclass
class Secure:
    broker: KafkaBroker
    ca: Path  # signed the broker's certificate
    other_ca: Path  # did not

    def env(self, password: str = PASSWORD, ca: Path | None = None) -> dict[str, str]:
        return {
            "PQL_BROKER": self.broker.sasl_ssl_bootstrap,
            "PQL_SECURITY_PROTOCOL": "SASL_SSL",
            "PQL_SASL_MECHANISM": "SCRAM-SHA-512",
            "PQL_SASL_USERNAME": USER,
            "PQL_SASL_PASSWORD": password,
            "PQL_SSL_CAFILE": str(ca or self.ca),
        }

    def security(self) -> dict[str, str]:
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": USER,
            "sasl.password": PASSWORD,
            "ssl.ca.location": str(self.ca),
        }


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    tmp = tmp_path_factory.mktemp("sasl-ssl")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    # Kafka reads a PEM keystore's key only in PKCS#8 form.
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    keystore = tmp / "broker.pem"
    keystore.write_bytes(key + b"".join(c.bytes() for c in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp / "other-ca.pem"))
    broker = KafkaBroker(scram_users={USER: PASSWORD}, sasl_ssl_keystore=keystore)
    broker.start()
    try:
        yield Secure(broker, tmp / "ca.pem", tmp / "other-ca.pem")
    finally:
        broker.cleanup()


def pql(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PQL_")} | env
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_worker_and_tools_over_sasl_ssl(secure: Secure, tmp_path: Path) -> None:
    events = write_jsonl(
        tmp_path / "events.jsonl", name_accounts(generate(accounts=6, days=6, seed=31))
    )
    expected = backtest(MODEL, events, out_dir=tmp_path)
    names = WorkerNames.unique("sasl")
    bootstrap = secure.broker.sasl_ssl_bootstrap
    ensure_topics(
        bootstrap,
        [TopicSpec(t, PARTITIONS) for t in (names.output_topic, names.dlq_topic)],
        secure.security(),
    )
    env = secure.env()
    workers = Workers(bootstrap, tmp_path)
    try:
        w = workers.new(MODEL, names)
        w.env = env
        w.start().wait_ready(timeout=90)

        topic, n = names.input_topic, str(PARTITIONS)
        res = pql(env, "produce", "--topic", topic, "--partitions", n, str(events))
        assert res.returncode == 0, res.stderr
        res = pql(
            env,
            "tail",
            "--topic",
            names.output_topic,
            "--from-beginning",
            "--json",
            "--max",
            str(len(expected)),
            "--timeout",
            "90",
        )
        assert res.returncode == 0, res.stderr + w.log_tail()
        got = [json.loads(line) for line in res.stdout.splitlines()]
        assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}

        deadline = time.monotonic() + 60
        while True:
            res = pql(env, "lag", "--group", names.app_id, "--topic", names.input_topic, "--json")
            assert res.returncode == 0, res.stderr
            if json.loads(res.stdout)["total_lag"] == 0:
                break
            assert time.monotonic() < deadline, res.stdout
            time.sleep(1)
    finally:
        workers.stop_all()


@pytest.mark.parametrize(
    "mistake,says",
    [("password", "SASL authentication failed"), ("certificate", "TLS failed")],
)
def test_a_wrong_password_or_untrusted_certificate_fails_fast(
    secure: Secure, tmp_path: Path, mistake: str, says: str
) -> None:
    env = secure.env(password="wrong") if mistake == "password" else secure.env(ca=secure.other_ca)
    names = WorkerNames.unique("refused")
    events = write_jsonl(tmp_path / "e.jsonl", name_accounts(generate(accounts=1, days=1, seed=1)))
    for args in (
        ("produce", "--topic", names.input_topic, str(events)),
        ("tail", "--topic", names.output_topic, "--timeout", "60"),
        ("lag", "--group", names.app_id, "--topic", names.input_topic),
    ):
        started = time.monotonic()
        res = pql(env, *args)
        took = time.monotonic() - started
        assert res.returncode != 0, (args, res.stdout)
        assert says in res.stderr, (args, res.stderr)
        assert took < FAST_S, (args, took)

    workers = Workers(secure.broker.sasl_ssl_bootstrap, tmp_path)
    try:
        w = workers.new(MODEL, names)
        w.env = env
        started = time.monotonic()
        w.start()
        assert w.proc is not None
        code = w.proc.wait(FAST_S)
        assert code != 0
        log = w.log_path.read_text(errors="replace")
        assert log.count(says) == 1, log  # said once, then exited: no retry loop inside
        assert time.monotonic() - started < FAST_S
    finally:
        workers.stop_all()
