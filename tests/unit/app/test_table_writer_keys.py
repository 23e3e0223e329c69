"""The table writer's keys are byte-for-byte Faust's: Faust's recovery and `table[key]` reads
find what it writes (the end-to-end proof is tests/integration/test_worker_wiped_state.py)."""

from __future__ import annotations

import faust
from hypothesis import given
from hypothesis import strategies as st

from streams.app.table_writer import SEAL_KEY, TableWriter, faust_key_bytes

APP = faust.App("pql-test-keys", autodiscover=False, store="memory://")
TABLE = APP.Table("accounts", partitions=4, value_type=bytes)
WRITER = TableWriter(TABLE, sink=None, seal=True)  # type: ignore[arg-type]  # keys only


@given(st.text())
def test_keys_are_fausts(key: str) -> None:
    assert WRITER.key_bytes(key) == faust_key_bytes(TABLE, key)


def test_fast_path_is_taken_and_seal_key_is_distinct() -> None:
    import orjson

    assert WRITER.key_bytes is orjson.dumps  # Faust's json codec is orjson here
    assert WRITER.key_bytes(SEAL_KEY) == b'"\\u0000pql-seal"'
    assert WRITER.key_bytes(SEAL_KEY) != WRITER.key_bytes("pql-seal")
