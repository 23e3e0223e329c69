"""`pql worker` refuses an invalid model before touching any broker: non-zero exit, quickly, with
a message naming each mistake's line and field."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from streams.broker.embedded import free_port
from tests.integration.worker_harness import REPO

BAD_MODEL = REPO / "tests" / "data" / "integration" / "bad-model.yaml"


def test_worker_refuses_bad_model() -> None:
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens here: no broker is needed to refuse
    env = {k: v for k, v in os.environ.items() if not k.startswith("PQL_")}
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--model", str(BAD_MODEL)]
        + ["--broker", nobody, "--web-port", str(free_port())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        start_new_session=True,
    )
    elapsed = time.monotonic() - started
    assert res.returncode != 0, res.stdout + res.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s to refuse"
    err = res.stderr
    assert "refusing to start" in err, err
    assert str(BAD_MODEL) in err, err
    # line numbers of the file above, with the dotted path of the field
    assert "5: signals.messages.window: invalid duration '30x'" in err, err
    assert "7: score[0].when: unknown signal 'mesages'" in err, err
    # it never got as far as the broker
    assert "no Kafka broker" not in err and "Traceback" not in err, err
