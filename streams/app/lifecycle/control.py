"""The worker's side of model changes: the control topic `<app>-models`, and the model file.

- A thread reads the control topic (one partition, never deleted) from the start; the event
  loop applies what it read to the `SwitchLog` (`drain`), so the stage sees one history.
- At start-up (`load`, blocking, before the agents run) the whole log is read: an app without a
  model gets the file's, applying from the start; a file newer than the live model is announced.
- While the worker runs, the model file is watched (`check_file`, every second) and re-read on
  SIGHUP: a changed, valid, newer, compatible model is announced; an invalid one is refused with
  the same `FILE:LINE: FIELD: MESSAGE` lines as `pql model check`, a metric and a log line, and
  the live model keeps serving. A Kubernetes ConfigMap update swaps a symlink: the file is read
  by path every time, so the new target is what counts.
- Shadow model files (`--shadow`) are watched the same way; a new valid one that can follow the
  live model is announced as a shadow (`streams.app.lifecycle.switchlog`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from streams.app.lifecycle.switchlog import LIVE, SHADOW, SwitchLog, announcement, report
from streams.io.kafka_config import consumer_config, producer_config
from streams.metrics import Metrics
from streams.model.errors import ModelError
from streams.model.loader import parse_model
from streams.model.spec import Model

log = logging.getLogger("streams.models")


@dataclass
class WatchedFile:
    """A model file the worker watches: the live model's, or a shadow's."""

    path: Path
    role: str
    digest: str = ""
    model: Model | None = None  # its last valid model, and its text
    text: str = ""


class ModelControl:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        model_path: Path,
        metrics: Metrics,
        security: Mapping[str, Any] | None = None,
        shadow_paths: Sequence[Path] = (),
    ) -> None:
        self.topic = topic
        self.files = [WatchedFile(model_path, LIVE)]
        self.files += [WatchedFile(path, SHADOW) for path in shadow_paths]
        self.metrics = metrics
        self.log = SwitchLog(partitions)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._consumer = Consumer(consumer_config(bootstrap, None, security, fetch_wait_ms=50))
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._producer = Producer(producer_config(bootstrap, security, linger_ms=0))
        self._records: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-control", daemon=True)
        self._next = 0  # the next offset of the log to read (start-up)
        self.reload_requested = threading.Event()  # set by SIGHUP

    # -- start-up ---------------------------------------------------------------------------
    def load(
        self,
        model: Model,
        text: str,
        timeout_s: float = 60.0,
        shadows: Sequence[tuple[Model, str]] = (),
    ) -> None:
        """Read the whole log; give a new app the file's model (from the start), or announce
        a file newer than the live model; then the shadow files' models (`shadows`, in the
        order of the shadow paths). Blocking: before the agents run."""
        for watched, (m, t) in zip(self.files, [(model, text), *shadows], strict=True):
            watched.digest, watched.model, watched.text = _digest(t), m, t
        self._read_to_end(timeout_s)
        if self.log.current is None:
            self._send(announcement(model, text, self.worker_id, at_ms=0))
            deadline = time.monotonic() + timeout_s
            while self.log.current is None and time.monotonic() < deadline:
                self._read_to_end(timeout_s)
            if self.log.current is None:
                raise RuntimeError(f"the model announcement never came back from {self.topic}")
        cur = self.log.current
        log.info(
            "model %s v%d is live (from stream time %d)",
            cur.model.name,
            cur.model.version,
            cur.at_ms,
        )
        for watched in self.files:
            self._offer(watched, at_start=True)
        self._publish()

    def _read_to_end(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, 0), timeout=max(deadline - time.monotonic(), 1.0)
                )
                break
            except KafkaException as exc:
                # A topic just created may have no leader yet (NOT_LEADER_FOR_PARTITION,
                # LEADER_NOT_AVAILABLE): retried until the deadline.
                err = exc.args[0] if exc.args else None
                retriable = err is not None and (err.retriable() or err.code() in _NO_LEADER)
                if not retriable or time.monotonic() > deadline:
                    raise RuntimeError(f"cannot read the model log {self.topic}: {exc}") from exc
                time.sleep(0.25)
        self._next = max(self._next, low)
        while self._next < high:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"reading the model log {self.topic} took over {timeout_s:.0f} s"
                )
            msg = self._consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            self._next = (msg.offset() or 0) + 1
            value = msg.value()
            if value:
                self._apply(orjson.loads(value))

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._consumer.close()
        self._producer.flush(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._consumer.poll(0.2)
            except KafkaException:  # the broker watch reports an outage
                time.sleep(0.5)
                continue
            value = msg.value() if msg is not None and msg.error() is None else None
            if value:
                self._records.put(orjson.loads(value))

    def drain(self) -> None:
        """Apply what the thread read (on the event loop, where the stage reads the log)."""
        changed = False
        while True:
            try:
                record = self._records.get_nowait()
            except queue.Empty:
                break
            self._apply(record)
            changed = True
        if changed:
            self._publish()
        for watched in self.files:
            model = watched.model
            if (
                model is not None
                and self.log.pending is None
                and model.fingerprint in self.log.deferred
            ):
                self.log.deferred.discard(model.fingerprint)
                self._offer(watched, at_start=False)

    def _apply(self, record: dict[str, Any]) -> None:
        line = self.log.apply(record)
        if line is None:
            return
        if " refused: " in line:
            log.error("%s", line)
        else:
            log.info("%s", line)

    def _publish(self) -> None:
        cur = self.log.current
        if cur is not None:
            m = cur.model
            self.metrics.set_model(m.name, str(m.version), m.fingerprint[:16])
            self.metrics.model_effective_from.set(cur.at_ms / 1000)
        self.metrics.model_switch_pending.set(1 if self.log.pending is not None else 0)
        running = {str(sh.model.version) for sh in self.log.running_shadows()}
        self.metrics.set_shadows(running)

    def send_report(
        self, model_id: str, bounds: dict[int, int | None], history_from: int | None = None
    ) -> None:
        """Queued, not awaited (on the event loop): the reader thread sees it come back."""
        self._send(report(model_id, bounds, self.worker_id, history_from), wait=False)

    def _send(self, record: dict[str, Any], wait: bool = True) -> None:
        self._producer.produce(self.topic, orjson.dumps(record), key=record["type"].encode())
        if wait:
            self._producer.flush(10)
        else:
            self._producer.poll(0)

    # -- the model files --------------------------------------------------------------------
    def check_file(self) -> None:
        """Re-read the model files if they changed (or on SIGHUP); announce what can go live,
        or run as a shadow."""
        forced = self.reload_requested.is_set()
        self.reload_requested.clear()
        for watched in self.files:
            self._check(watched, forced)

    def _check(self, watched: WatchedFile, forced: bool) -> None:
        path = watched.path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            if forced:
                log.error("cannot read the model file %s: %s", path, exc)
                self.metrics.model_reloads_total.labels("unreadable").inc()
            return
        digest = _digest(text)
        if digest == watched.digest and not forced:
            return
        watched.digest = digest
        try:
            model = parse_model(text, source=str(path))
        except ModelError as exc:
            for issue in exc.issues:
                log.error("%s:%s", path, issue)
            log.error(
                "the new %s file is not valid: %s; fix it (`pql model check %s`)",
                "model" if watched.role == LIVE else "shadow model",
                "the live model keeps serving" if watched.role == LIVE else "it is not run",
                path,
            )
            self.metrics.model_reloads_total.labels("invalid").inc()
            return
        watched.model, watched.text = model, text
        self._offer(watched, at_start=False)

    def _offer(self, watched: WatchedFile, at_start: bool) -> None:
        model, role = watched.model, watched.role
        assert model is not None
        cur = self.log.current
        assert cur is not None
        if self.log.known(model, role):
            if not at_start:
                log.info("model file read again: %s v%d, nothing new", model.name, model.version)
            return
        # Checked before announcing: every worker would refuse it.
        why = self.log.refusal(model, role)
        if why is not None:
            what = "switching to" if role == LIVE else "running as a shadow"
            log.error(
                "not %s %s (%s v%d): %s; the live v%d keeps serving",
                what,
                watched.path,
                model.name,
                model.version,
                why,
                cur.model.version,
            )
            self.metrics.model_reloads_total.labels("refused").inc()
            return
        what = "the switch to" if role == LIVE else "the shadow"
        log.info("announcing %s %s v%d", what, model.name, model.version)
        self.metrics.model_reloads_total.labels("announced").inc()
        self._send(announcement(model, watched.text, self.worker_id, role=role))


_NO_LEADER = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._TIMED_OUT,
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
