"""Web endpoints on the worker's port: Kubernetes probes and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from streams.app.health import readiness
from streams.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from faust.tables.manager import TableManager

    from streams.app.worker import Pipeline


def register_pages(p: Pipeline) -> None:
    app = p.app

    def refresh_gauges() -> Any:
        r = readiness(p)
        p.metrics.worker_ready.set(1 if r.ready else 0)
        p.metrics.recovery_in_progress.set(
            1 if cast("TableManager", app.tables).recovery.in_recovery else 0
        )
        return r

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        r = refresh_gauges()
        return web.json(r.as_json(), status=200 if r.ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        refresh_gauges()
        # As a header: aiohttp refuses a content_type argument that carries a charset.
        return web.bytes(p.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
