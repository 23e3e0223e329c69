"""librdkafka calls that crash the process, kept out of the package.

`AdminClient.list_consumer_group_offsets` answered NOT_COORDINATOR (a group coordinator still
loading, as right after a broker restart) makes librdkafka 2.16 and before follow a NULL
consumer-group pointer in its main thread: SIGSEGV (librdkafka issues #5040, #5315). The
worker read its lag that way every 5 s and died of it in the broker-outage test.
`streams.io.lag.committed_offsets` reads committed offsets through a consumer instead."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "streams"
HAZARDS = {
    "list_consumer_group_offsets": "librdkafka #5040: SIGSEGV on NOT_COORDINATOR; use "
    "streams.io.lag.committed_offsets (Consumer.committed)",
}


def test_no_module_calls_an_admin_request_that_crashes_librdkafka() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {name}: {why}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for name, why in HAZARDS.items()
        if re.search(rf"\.{name}\(", line)
    ]
    assert not found, "\n".join(found)
