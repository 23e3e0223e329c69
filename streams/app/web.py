"""Web endpoints on the worker's port: Kubernetes probes and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from streams.app.health import Readiness
from streams.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    import faust
    from faust.tables.manager import TableManager


def register_pages(app: faust.App, registry: Metrics, readiness: Callable[[], Readiness]) -> None:
    """/healthz, /readyz (from `readiness`) and /metrics on the Faust app's web server."""

    def refresh_gauges() -> Any:
        r = readiness()
        registry.worker_ready.set(1 if r.ready else 0)
        registry.recovery_in_progress.set(
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
        return web.bytes(registry.render(), headers={"Content-Type": CONTENT_TYPE})
