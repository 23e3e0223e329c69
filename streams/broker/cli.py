"""`pql broker`: run a broker in the foreground until Ctrl-C or SIGTERM — the embedded one
(Tansu, in memory), or with `--kafka` a real Apache Kafka from Maven Central jars."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from streams.broker.child import BrokerStartError, ChildBroker
from streams.broker.embedded import EmbeddedBroker


@click.command("broker")
@click.option("--port", type=int, default=9092, show_default=True, help="TCP port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--kafka",
    is_flag=True,
    help="Run Apache Kafka (single-node KRaft, topic auto-creation off) instead of the embedded "
    "broker. Needs Java 17+ and Maven; the jars are fetched from Maven Central once.",
)
def broker(port: int, host: str, kafka: bool) -> None:
    """Run a Kafka broker for demos and development.

    The embedded broker (default) keeps everything in memory: all topics, offsets and groups
    are lost when it stops. With --kafka they live in a temporary directory, removed on stop.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handlers first: a SIGTERM during startup still stops the broker cleanly.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    child: ChildBroker
    if kafka:
        from streams.broker.kafka import KAFKA_VERSION, KafkaBroker

        child = KafkaBroker(port=port, host=host)
        what = f"Apache Kafka {KAFKA_VERSION} (KRaft, data in {child.data_dir})"
        lost = "Ctrl-C to stop (its data directory is removed)."
    else:
        child = EmbeddedBroker(port=port, host=host)
        what = "Embedded broker (Tansu, in memory)"
        lost = "Ctrl-C to stop (all data is lost)."
    try:
        try:
            child.start()
        except BrokerStartError as e:
            raise click.ClickException(str(e)) from e
        if not stop.is_set():
            click.echo(f"{what} listening on {child.bootstrap}")
            click.echo(f"  next: pql worker --broker {child.bootstrap} ...")
            click.echo(f"        pql produce --broker {child.bootstrap} EVENTS.jsonl")
            click.echo(lost, err=True)
        while not stop.wait(0.5):
            if not child.is_running():
                raise click.ClickException(
                    f"the broker exited unexpectedly; its output is in {child.log_path}"
                )
        click.echo("stopping broker...", err=True)
    finally:
        child.cleanup()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("broker stopped.", err=True)
