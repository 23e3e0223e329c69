"""Start a worker: detect the broker, create topics explicitly, then run the Faust app until
SIGTERM/SIGINT (Faust stops the agents, commits acked offsets and closes RocksDB)."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
from pathlib import Path

import faust

from streams import native
from streams.app.lifecycle.control import ModelControl
from streams.app.logs import limit_repeats
from streams.app.settings import Settings
from streams.broker.detect import TANSU_CLUSTER_ID, wait_for_broker
from streams.gc_tuning import tune_gc
from streams.io.topics import TopicSpec, ensure_topics, topic_partitions
from streams.metrics import Metrics

log = logging.getLogger("streams.worker")

COMPACTED = {"cleanup.policy": "compact"}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.partitions
    names = [
        settings.input_topic,
        settings.output_topic,
        settings.shadow_topic,
        settings.dlq_topic,
        settings.by_user_topic,
        settings.by_account_topic,
    ]
    specs = [TopicSpec(name, n, {}) for name in names]
    specs += [
        TopicSpec(settings.changelog_topic(t), n, dict(COMPACTED)) for t in ("users", "accounts")
    ]
    # The model history: a few records per model change, kept for good (any worker may need
    # any version's text).
    specs.append(TopicSpec(settings.models_topic, 1, {"retention.ms": "-1"}))
    return specs


def _use_uvloop() -> None:
    """uvloop (a declared dependency on POSIX) under Faust, aiokafka and the web server: their
    per-record futures and callbacks are most of what the event loop runs."""
    try:
        import uvloop
    except ImportError:  # e.g. Windows: the standard loop works, slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_worker(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # A crash in native code a Python thread runs (RocksDB, the compiled core) prints every
    # thread's Python stack to stderr before the process dies, so its log says where
    # (librdkafka's own threads block signals: a crash there is the kernel's alone). SIGQUIT
    # prints them at any time, even with the event loop stuck (mode's SIGUSR1 needs the loop;
    # its SIGUSR2 starts pdb).
    faulthandler.enable()
    faulthandler.register(signal.SIGQUIT, all_threads=True)
    _use_uvloop()
    limit_repeats()
    log.info("core: %s", native.ENGINE)
    embedded = settings.embedded
    security = settings.security or None
    # Wait for the broker before anything else: a worker started before it (or while it
    # restarts) comes up when it answers, and the embedded-broker check below is then an
    # answer, not a timeout taken for "not embedded".
    found = wait_for_broker(settings.broker, security, log)
    log.info("Kafka broker at %s answers (cluster %s)", settings.broker, found)
    if embedded is None:
        embedded = found == TANSU_CLUSTER_ID
    if embedded:
        log.warning(
            "embedded broker (Tansu) detected at %s: applying its workarounds "
            "(each flush ends with a single-record batch per changelog partition so changelog "
            "recovery is exact; topics created up front)",
            settings.broker,
        )
    # Created before anything reads them: a broker that auto-creates topics would otherwise pick
    # its own partition count, and Faust tables refuse a mismatched source topic.
    ensure_topics(settings.broker, topic_specs(settings), security=security)
    # The ingest stage's routing state follows the input's partitioning, whatever it is.
    input_partitions = topic_partitions(settings.broker, settings.input_topic, security=security)
    ensure_topics(
        settings.broker,
        [
            TopicSpec(
                settings.ingest_users_topic, input_partitions or settings.partitions, COMPACTED
            )
        ],
        security=security,
    )
    metrics = Metrics()
    model = settings.model
    metrics.set_model(model.name, str(model.version), model.fingerprint[:16])
    control = None
    if model.source_path is not None:
        control = ModelControl(
            settings.broker,
            settings.models_topic,
            settings.partitions,
            Path(model.source_path),
            metrics,
            security,
            shadow_paths=[Path(m.source_path) for m in settings.shadows if m.source_path],
        )
        control.load(
            model,
            Path(model.source_path).read_text(encoding="utf-8"),
            shadows=[
                (m, Path(m.source_path).read_text(encoding="utf-8"))
                for m in settings.shadows
                if m.source_path
            ],
        )
        # SIGHUP: read the model file again (mode's worker leaves SIGHUP alone; its default
        # would end the process).
        signal.signal(signal.SIGHUP, lambda *_: control.reload_requested.set())
    from streams.app.worker import Pipeline

    pipeline = Pipeline(settings, metrics, embedded, control)
    worker = faust.Worker(
        pipeline.app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
    )
    tune_gc()
    pipeline.ingest.start()
    pipeline.broker_watch.start()
    if control is not None:
        control.start()
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if control is not None:
            control.stop()
        pipeline.broker_watch.stop()
        pipeline.ingest.stop()
        pipeline.sink.close()
    return 0
