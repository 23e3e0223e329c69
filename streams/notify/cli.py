"""`pql notify`: deliver PQL transitions to Slack and webhooks (`streams.notify.service`).

Every option is also a `PQL_NOTIFY_*` environment variable (the Kafka ones fall back to
`PQL_BROKER`...), which is how the Helm chart sets them.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from streams.io.kafka_config import kafka_options_env
from streams.notify.retry import RetryPolicy
from streams.notify.routes import (
    DEFAULT_TIMEOUT_S,
    Destination,
    RoutesError,
    Routing,
    default_routing,
    load_routes,
)

if TYPE_CHECKING:
    from streams.notify.service import NotifySettings

DEFAULT_TOPIC = "pql-transitions"
ENV = "PQL_NOTIFY_"


def _option(flag: str, **kwargs: Any) -> Any:
    """A click option whose environment variable is PQL_NOTIFY_<FLAG> (--dlq-topic:
    PQL_NOTIFY_DLQ_TOPIC), with its default shown."""
    kwargs.setdefault("show_default", not kwargs.get("is_flag"))
    return click.option(flag, envvar=ENV + flag[2:].upper().replace("-", "_"), **kwargs)


def build_routing(
    webhook: str | None,
    secret: str | None,
    slack_webhook: str | None,
    routes: Path | None,
    timeout_s: float,
) -> Routing:
    """The destinations and rules the options describe (raises click.UsageError)."""
    flags: dict[str, Destination] = {}
    if webhook:
        flags["webhook"] = Destination("webhook", "webhook", webhook, secret or None, timeout_s)
    elif secret:
        raise click.UsageError("--secret signs --webhook deliveries: give --webhook too")
    if slack_webhook:
        flags["slack"] = Destination("slack", "slack", slack_webhook, None, timeout_s)
    for name, dest in flags.items():
        if not dest.url.startswith(("http://", "https://")):
            raise click.UsageError(
                f"--{name.replace('slack', 'slack-webhook')}: expected an "
                f"http:// or https:// URL, got {dest.url!r}"
            )
    if routes is not None:
        try:
            routing = load_routes(routes, flags)
        except RoutesError as exc:
            raise click.UsageError(f"invalid routes file:\n{exc}") from None
        except OSError as exc:
            raise click.UsageError(f"cannot read the routes file: {exc}") from None
    else:
        routing = default_routing(flags)
    if not routing.rules:
        raise click.UsageError(
            "nothing to deliver to: give --webhook URL and/or --slack-webhook URL, or --routes "
            "FILE (see README, 'pql notify')"
        )
    return routing


@click.command("notify")
@kafka_options_env(ENV)
@_option("--topic", default=DEFAULT_TOPIC)
@_option("--webhook", default=None, help="A JSON webhook: every transition (without --routes).")
@_option("--secret", default=None, help="HMAC-SHA256 key signing --webhook's deliveries.")
@_option("--slack-webhook", default=None, help="A Slack incoming webhook: the alerts.")
@_option(
    "--routes",
    type=click.Path(path_type=Path),
    default=None,
    help="Destinations and rules (YAML; README 'pql notify').",
)
@_option(
    "--group",
    default="pql-notify",
    help="Consumer group prefix: each destination commits as GROUP.DESTINATION.",
)
@_option("--dlq-topic", default=None, help="Dead-letter topic. [default: TOPIC-notify-dlq]")
@_option(
    "--attempts",
    type=click.IntRange(1, 100),
    default=6,
    help="Attempts per transition and destination, then the dead-letter topic.",
)
@_option(
    "--backoff",
    type=click.FloatRange(0),
    default=0.5,
    help="Seconds: the first retry's backoff ceiling (it doubles, with full jitter).",
)
@_option("--backoff-max", type=click.FloatRange(0), default=30.0)
@_option(
    "--retry-after-max",
    type=click.FloatRange(0),
    default=300.0,
    help="Seconds: a longer Retry-After is cut to this.",
)
@_option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=DEFAULT_TIMEOUT_S,
    help="Seconds per request (--webhook, --slack-webhook; routes set their own).",
)
@_option(
    "--dedupe-depth",
    type=click.IntRange(0),
    default=10_000,
    help="Transition ids remembered per partition, against re-sent transitions.",
)
@_option(
    "--from-beginning",
    is_flag=True,
    help="A new group starts at the oldest transition (default: the newest).",
)
@_option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9310,
    help="Prometheus metrics; 0: none.",
)
@click.option("--check", is_flag=True, help="Validate the options and routes, then exit.")
def notify(
    broker: str,
    security: dict[str, str] | None,
    topic: str,
    webhook: str | None,
    secret: str | None,
    slack_webhook: str | None,
    routes: Path | None,
    group: str,
    dlq_topic: str | None,
    attempts: int,
    backoff: float,
    backoff_max: float,
    retry_after_max: float,
    timeout: float,
    dedupe_depth: int,
    from_beginning: bool,
    metrics_port: int,
    check: bool,
) -> None:
    """Deliver PQL transitions to Slack incoming webhooks and JSON webhooks.

    Every option is also an environment variable PQL_NOTIFY_<OPTION> (--dlq-topic:
    PQL_NOTIFY_DLQ_TOPIC; the Kafka ones fall back to PQL_BROKER...)."""
    routing = build_routing(webhook, secret, slack_webhook, routes, timeout)
    summary = ", ".join(
        f"{d.name} ({d.kind})"
        for d in routing.destinations.values()
        if d.name in {r.to for r in routing.rules}
    )
    if check:
        click.echo(f"ok: {len(routing.rules)} rules to {summary}")
        return
    from streams.notify.service import NotifySettings

    settings = NotifySettings(
        bootstrap=broker,
        security=security,
        topic=topic,
        group=group,
        dlq_topic=dlq_topic or f"{topic}-notify-dlq",
        policy=RetryPolicy(attempts, backoff, backoff_max, retry_after_max),
        dedupe_depth=max(1, dedupe_depth),
        from_beginning=from_beginning,
    )
    _serve(settings, routing, metrics_port, summary)


def _serve(settings: NotifySettings, routing: Routing, metrics_port: int, summary: str) -> None:
    from prometheus_client import start_http_server

    from streams.io.topics import BrokerUnreachableError, TopicSpec, ensure_topics, topic_partitions
    from streams.notify.metrics import NotifyMetrics
    from streams.notify.service import Notifier

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("pql.notify")
    broker, security, topic, dlq = (
        settings.bootstrap,
        settings.security,
        settings.topic,
        settings.dlq_topic,
    )
    try:
        partitions = topic_partitions(broker, topic, security)
        ensure_topics(broker, [TopicSpec(dlq, max(1, min(partitions or 1, 6)))], security)
    except BrokerUnreachableError as exc:
        raise click.ClickException(f"{exc}; check --broker (or PQL_NOTIFY_BROKER)") from None
    metrics = NotifyMetrics()
    if metrics_port:
        start_http_server(metrics_port, registry=metrics.registry)
    notifier = Notifier(settings, routing, metrics)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping (signal %d): finishing the deliveries in flight", signum)
        notifier.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "delivering %s to %s; dead letters to %s%s",
        topic,
        summary,
        dlq,
        f"; metrics on :{metrics_port}" if metrics_port else "",
    )
    notifier.start()
    code = notifier.wait()
    log.info("stopped")
    sys.exit(code)
