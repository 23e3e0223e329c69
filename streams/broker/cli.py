"""`pql broker`: run the embedded broker in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from streams.broker.embedded import BrokerStartError, EmbeddedBroker


@click.command("broker")
@click.option("--port", type=int, default=9092, show_default=True, help="TCP port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
def broker(port: int, host: str) -> None:
    """Run an embedded Kafka-protocol broker (Tansu, in memory) for demos and development.

    All topics, offsets and groups are lost when it stops.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handlers first: a SIGTERM during startup still stops the broker cleanly.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    embedded = EmbeddedBroker(port=port, host=host)
    try:
        try:
            embedded.start()
        except BrokerStartError as e:
            raise click.ClickException(str(e)) from e
        if not stop.is_set():
            click.echo(f"Embedded broker (Tansu, in memory) listening on {embedded.bootstrap}")
            click.echo(f"  next: pql worker --broker {embedded.bootstrap} ...")
            click.echo(f"        pql produce --broker {embedded.bootstrap} EVENTS.jsonl")
            click.echo("Ctrl-C to stop (all data is lost).", err=True)
        while not stop.wait(0.5):
            if not embedded.is_running():
                raise click.ClickException(
                    f"the broker exited unexpectedly; its output is in {embedded.log_path}"
                )
        click.echo("stopping broker...", err=True)
    finally:
        embedded.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("broker stopped.", err=True)
