"""Web endpoints on the worker's port: Kubernetes probes and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from streams.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from faust.tables.manager import TableManager

    from streams.app.worker import Pipeline


def is_ready(p: Pipeline) -> bool:
    """Ready once partitions are assigned and table recovery finished, while the broker
    answers."""
    app = p.app
    # App.tables is typed as TableManagerT, which lacks `recovery`; it is a TableManager.
    recovery = cast("TableManager", app.tables).recovery
    return bool(
        p.ready
        and p.broker_watch.reachable
        and not app.rebalancing
        and not recovery.in_recovery
        and recovery.completed.is_set()
    )


def register_pages(p: Pipeline) -> None:
    app = p.app

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = is_ready(p)
        p.metrics.worker_ready.set(1 if ready else 0)
        p.metrics.recovery_in_progress.set(
            1 if cast("TableManager", app.tables).recovery.in_recovery else 0
        )
        body = {
            "ready": ready,
            "rebalancing": bool(app.rebalancing),
            "broker_reachable": p.broker_watch.reachable,
        }
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        ready = is_ready(p)
        p.metrics.worker_ready.set(1 if ready else 0)
        p.metrics.recovery_in_progress.set(
            1 if cast("TableManager", app.tables).recovery.in_recovery else 0
        )
        # As a header: aiohttp refuses a content_type argument that carries a charset.
        return web.bytes(p.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
