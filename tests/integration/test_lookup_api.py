"""The account lookup API (issue 15 item 5) on two live workers sharing the partitions, with an
API token: either worker answers for every account (forwarding to the owner) and lists every
PQL (asking the other), equal to what the backtest's transitions say; then the API is fuzzed
from its OpenAPI document (schemas/pql-api.openapi.yaml) with schemathesis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from streams.io.simulate import generate
from tests.integration.worker_harness import (
    EXAMPLES,
    REPO,
    WorkerNames,
    WorkerProc,
    Workers,
    backtest,
    name_accounts,
    produce,
    wait_consumed,
    workers,  # noqa: F401 - fixture
    write_jsonl,
)

MODEL = EXAMPLES / "team-chat.yaml"
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPENAPI = REPO / "schemas" / "pql-api.openapi.yaml"


def get(w: WorkerProc, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(w.url + path, headers=AUTH if headers is None else headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return int(e.code), json.loads(e.read() or b"null")


def final_states(transitions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per account, what its transitions say last: pql, segments, the last five ids."""
    out: dict[str, dict[str, Any]] = {}
    for t in transitions:
        s = out.setdefault(t["account_id"], {"ids": []})
        s["pql"], s["segments"] = t["pql"], sorted(t["segments"])
        s["ids"].append(t["transition_id"])
    return out


def all_pqls(w: WorkerProc, query: dict[str, str], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        q = dict(query, limit=str(limit)) | ({"cursor": cursor} if cursor else {})
        status, page = get(w, "/v1/pqls?" + urllib.parse.urlencode(q))
        assert status == 200, page
        assert page["count"] == len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination never ended")


def test_lookup_api_on_two_workers(broker: Any, workers: Workers, tmp_path: Path) -> None:  # noqa: F811
    events = write_jsonl(
        tmp_path / "events.jsonl", name_accounts(generate(accounts=30, days=12, seed=3))
    )
    expected = backtest(MODEL, events, out_dir=tmp_path)
    finals = final_states(expected)
    pqls = sorted(a for a, s in finals.items() if s["pql"])
    assert len(pqls) >= 5 and len(finals) - len(pqls) >= 5

    names = WorkerNames.unique("lookup")
    names.create_topics(workers.bootstrap)
    pair = []
    for n in ("w1", "w2"):
        w = workers.new(MODEL, names, name=n)
        w.env.update({"PQL_API_TOKEN": TOKEN, "PQL_ADVERTISED_URL": w.url})
        pair.append(w.start())
    for w in pair:
        w.wait_ready(timeout=90)
    lines = produce(workers.bootstrap, names.input_topic, events).read
    wait_consumed(pair, names.input_topic, lines, timeout=90)

    # Every account, from either worker: the same answer, the owner's, as the backtest says.
    served = set()
    for account, want in finals.items():
        views: list[Any] = []
        for _ in range(80):  # the last flush, and quiet accounts advanced to stream time
            views = [get(w, f"/v1/accounts/{urllib.parse.quote(account)}") for w in pair]
            ids = [
                [t["transition_id"] for t in v["last_transitions"]] for s, v in views if s == 200
            ]
            if (
                len(ids) == 2
                and ids[0] == ids[1] == want["ids"][-5:][::-1]
                and (views[0][1] == views[1][1])
            ):
                break
            time.sleep(0.25)
        assert [s for s, _ in views] == [200, 200], (account, views)
        # Read one after the other, both are the owner's answer (the same, once it is still).
        assert views[0][1] == views[1][1], (account, views)
        views = [v for _, v in views]
        view = views[0]
        assert view["pql"] == want["pql"] and sorted(view["segments"]) == want["segments"]
        assert [t["transition_id"] for t in view["last_transitions"]] == want["ids"][-5:][::-1]
        assert view["playbook"]["route"] and view["playbook"]["owner"]
        served.add(view["served_by"])
    assert served == {pair[0].url, pair[1].url}, "both workers own accounts"
    assert get(pair[1], "/v1/accounts/no-such-account")[0] == 404

    # Every PQL, from either worker, a page of 4 at a time; filters.
    for w in pair:
        items = all_pqls(w, {}, limit=4)
        assert [i["account_id"] for i in items] == pqls
    icp = [a for a in pqls if "icp_pql" in finals[a]["segments"]]
    assert [i["account_id"] for i in all_pqls(pair[0], {"segment": "icp_pql"}, 3)] == icp
    by_route: dict[str, list[str]] = {}
    for i in all_pqls(pair[1], {}, limit=1000):
        by_route.setdefault(i["route"], []).append(i["account_id"])
    for route, accounts in by_route.items():
        assert [i["account_id"] for i in all_pqls(pair[0], {"route": route}, 2)] == accounts
    owner = all_pqls(pair[0], {}, 1000)[0]["owner"]
    assert all(i["owner"] == owner for i in all_pqls(pair[1], {"owner": owner}, 5))

    # The token: required on /v1, not on the probes.
    assert get(pair[0], "/v1/pqls", headers={})[0] == 401
    assert get(pair[1], f"/v1/accounts/{pqls[0]}", {"Authorization": "Bearer nope"})[0] == 401
    assert get(pair[0], "/v1/pqls?limit=0")[0] == 400
    assert pair[0].get("/readyz")[0] == 200

    # Fuzzed from the OpenAPI document: no 5xx, every status, content type and body as
    # documented, invalid input refused.
    fuzz = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            str(OPENAPI),
            "--url",
            pair[0].url,
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,response_headers_conformance,negative_data_rejection",
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert fuzz.returncode == 0, fuzz.stdout[-6000:] + fuzz.stderr[-2000:]
    assert "Tested: 2" in fuzz.stdout and "No issues found" in fuzz.stdout, fuzz.stdout
