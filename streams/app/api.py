"""The account lookup API on the worker's web port (schemas/pql-api.openapi.yaml):

- `GET /v1/accounts/{account_id}`: one account's status, score, segments, signals, reasons,
  playbook and last transitions (`streams.app.lookup`);
- `GET /v1/pqls`: the current PQL accounts, filtered by segment, route or owner, in account-id
  order, `limit` at a time with a `cursor`.

Any worker answers. An account lives in one partition of the accounts table, owned by one worker:
a worker that does not own it forwards the request to the one that does (the group's assignment
says which, by the URL each worker advertises: `--advertised-url`), and `/v1/pqls` asks every
worker for the PQLs of its partitions (`scope=local`) and merges them. While partitions move (a
rebalance) the answer is 503 with Retry-After, never a partial list.

With `--api-token` (PQL_API_TOKEN) every /v1 request needs `Authorization: Bearer <token>`;
workers pass it on when they forward. /healthz, /readyz and /metrics stay open.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from yarl import URL

from streams.app.ingest.config import partition_of
from streams.app.lookup import account_view, matches, pql_item
from streams.scoring.engine import Scorer
from streams.state.account import AccountState

if TYPE_CHECKING:
    import faust

    from streams.app.accounts import AccountStage
    from streams.app.settings import Settings

log = logging.getLogger(__name__)

FORWARDED = "X-PQL-Forwarded"  # set on requests between workers: never forwarded again
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
FORWARD_TIMEOUT_S = 10.0


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.retry_after = retry_after


def unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message, retry_after=1)


class LookupApi:
    """What the pages need of the worker, behind plain callables (testable without Faust)."""

    def __init__(
        self,
        app: faust.App,
        stage: AccountStage,
        partitions: int,
        token: str | None,
        table_metadata: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.app = app
        self.stage = stage
        self.partitions = partitions
        self.token = token
        self.table_metadata = table_metadata  # host URL -> {changelog topic: [partitions]}

    @classmethod
    def of(cls, app: faust.App, stage: AccountStage, settings: Settings) -> LookupApi:
        """The worker's: owners from the group's assignment of the accounts table."""
        return cls(
            app,
            stage,
            settings.partitions,
            settings.api_token,
            lambda: app.router.table_metadata("accounts"),
        )

    # -- auth --------------------------------------------------------------------------------
    def check_auth(self, headers: Any) -> None:
        if not self.token:
            return
        given = headers.get("Authorization", "")
        expected = f"Bearer {self.token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <the API token>")

    # -- who owns what -----------------------------------------------------------------------
    def self_url(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    def owners(self) -> dict[int, str]:
        """Partition -> the URL of the worker owning it (actives only)."""
        out: dict[int, str] = {}
        for host, topics in self.table_metadata().items():
            for parts in topics.values():
                for p in parts:
                    out[p] = str(host).rstrip("/")
        return out

    def owner_of(self, account_id: str) -> tuple[int, str | None]:
        part = partition_of(account_id, self.partitions)
        return part, self.owners().get(part)

    def owns(self, part: int) -> bool:
        return part in self.stage.table.active_partitions()

    # -- local answers -----------------------------------------------------------------------
    def _local_state(self, part: int, account_id: str) -> tuple[AccountState, Scorer] | None:
        stage = self.stage
        state = stage.cache.get(account_id)
        if state is None:
            state = stage.codec.decode(stage.table.get(part, account_id))
        if state is None:
            return None
        version = state.version or stage.versions.first_version
        return state, stage.versions.scorer(version)

    def local_account(self, account_id: str) -> dict[str, Any]:
        part = partition_of(account_id, self.partitions)
        if not self.owns(part):
            raise unavailable(f"partition {part} is moving between workers; retry")
        found = self._local_state(part, account_id)
        if found is None:
            raise ApiError(404, "not_found", f"no account {account_id!r} in this app's state")
        state, scorer = found
        view = account_view(account_id, state, scorer)
        view["partition"] = part
        view["served_by"] = self.self_url()
        return view

    def local_pqls(
        self,
        segment: str | None,
        route: str | None,
        owner: str | None,
        after: str | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], list[int]]:
        """(up to `limit` + 1 matching PQLs after `after`, in id order; the partitions they
        cover)."""
        owned = set(self.stage.table.active_partitions())
        n = self.partitions
        ids = sorted(
            a
            for a in self.stage.members.pqls
            if (after is None or a > after) and partition_of(a, n) in owned
        )
        items: list[dict[str, Any]] = []
        for account_id in ids:
            found = self._local_state(partition_of(account_id, n), account_id)
            if found is None or not found[0].pql:
                continue
            item = pql_item(account_id, *found)
            if matches(item, segment, route, owner):
                items.append(item)
                if len(items) > limit:
                    break
        return items, sorted(owned)


def _query(request: Any) -> dict[str, Any]:
    """The validated query of /v1/pqls (400 on anything else)."""
    q = request.query
    out: dict[str, Any] = {}
    for name in ("segment", "route", "owner", "cursor"):
        values = q.getall(name, [])
        if len(values) > 1:
            raise ApiError(400, "bad_request", f"'{name}' given more than once")
        value = values[0] if values else None
        if value is not None and not value:
            raise ApiError(400, "bad_request", f"'{name}' must not be empty")
        out[name] = value
    raw = q.get("limit")
    if raw is None:
        out["limit"] = DEFAULT_LIMIT
    else:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise ApiError(
                400, "bad_request", f"'limit' must be a whole number from 1 to {MAX_LIMIT}"
            )
        out["limit"] = int(raw)
    scope = q.get("scope", "all")
    if scope not in ("all", "local"):
        raise ApiError(400, "bad_request", "'scope' is 'all' (default) or 'local'")
    out["scope"] = scope
    return out


def register_api(app: faust.App, api: LookupApi) -> None:
    """The /v1 pages on the Faust app's web server."""

    def error(view: Any, exc: ApiError) -> Any:
        headers: dict[str, str] = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="pql-streams"'
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return view.json(
            {"error": exc.error, "message": exc.message}, status=exc.status, headers=headers
        )

    async def forward(view: Any, request: Any, host: str) -> Any:
        headers = {FORWARDED: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        url = URL(host).join(request.rel_url)
        body, status, content_type = await _get(app, url, headers)
        return view.bytes(body, status=status, content_type=content_type)

    @app.page("/v1/accounts/{account_id}")
    async def account(view: Any, request: Any, account_id: str) -> Any:
        try:
            api.check_auth(request.headers)
            part, owner = api.owner_of(account_id)
            if owner is None:
                raise unavailable(f"partition {part} has no owner yet (a rebalance); retry")
            if owner != api.self_url():
                if request.headers.get(FORWARDED):
                    raise unavailable(f"partition {part} is moving between workers; retry")
                return await forward(view, request, owner)
            return view.json(api.local_account(account_id))
        except ApiError as exc:
            return error(view, exc)

    @app.page("/v1/pqls")
    async def pqls(view: Any, request: Any) -> Any:
        try:
            api.check_auth(request.headers)
            q = _query(request)
            limit = q["limit"]
            filters = (q["segment"], q["route"], q["owner"], q["cursor"], limit)
            if q["scope"] == "local":
                items, parts = api.local_pqls(*filters)
                return view.json({"items": items, "partitions": parts})
            items = await _gather(app, api, request, filters)
            more = len(items) > limit
            items = items[:limit]
            return view.json(
                {
                    "items": items,
                    "count": len(items),
                    "next_cursor": items[-1]["account_id"] if more and items else None,
                }
            )
        except ApiError as exc:
            return error(view, exc)


async def _gather(
    app: faust.App, api: LookupApi, request: Any, filters: tuple[Any, ...]
) -> list[dict[str, Any]]:
    """Every worker's PQLs for `filters`, merged in id order (503 unless every partition's
    owner answered)."""
    owners = api.owners()
    missing = sorted(set(range(api.partitions)) - set(owners))
    if missing:
        raise unavailable(f"partitions {missing} have no owner yet (a rebalance); retry")
    me = api.self_url()
    headers = {FORWARDED: "1"}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    url = request.rel_url.update_query(scope="local")
    covered: set[int] = set()
    items: list[dict[str, Any]] = []

    async def ask(host: str) -> tuple[list[dict[str, Any]], list[int]]:
        if host == me:
            return api.local_pqls(*filters)
        body, status, _ = await _get(app, URL(host).join(url), headers)
        if status != 200:
            raise unavailable(f"worker {host} answered {status}; retry")
        data = orjson.loads(body)
        return data["items"], data["partitions"]

    for found, parts in await asyncio.gather(*(ask(h) for h in sorted(set(owners.values())))):
        items.extend(found)
        covered.update(parts)
    if covered != set(range(api.partitions)):
        gaps = sorted(set(range(api.partitions)) - covered)
        raise unavailable(f"partitions {gaps} are moving between workers; retry")
    items.sort(key=lambda item: item["account_id"])
    return items


async def _get(app: faust.App, url: URL, headers: dict[str, str]) -> tuple[bytes, int, str]:
    import aiohttp

    try:
        async with app.http_client.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
        ) as response:
            body = await response.read()
            return body, response.status, response.content_type
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("lookup API: %s did not answer: %s", url, exc)
        raise unavailable(f"worker {url.origin()} did not answer; retry") from None
