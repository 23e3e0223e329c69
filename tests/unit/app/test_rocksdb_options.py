"""The tables' RocksDB memory is bounded by our settings, not Faust's defaults (a 2 GiB block
cache and 3 x 64 MiB write buffers per partition database)."""

from __future__ import annotations

from pathlib import Path

import faust

from streams.app.settings import Settings
from streams.model.loader import load_model

ROOT = Path(__file__).resolve().parents[3]


def test_table_stores_get_our_rocksdb_options(tmp_path: Path) -> None:
    settings = Settings(
        model=load_model(ROOT / "examples" / "team-chat.yaml"),
        rocksdb_block_cache_mb=16,
        rocksdb_write_buffer_mb=4,
    )
    app = faust.App("pql-test-rocksdb", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table(
        "accounts", partitions=4, value_type=bytes, options=settings.rocksdb_options()
    )
    opts = table.data.rocksdb_options
    assert opts.block_cache_size == 16 * 1024 * 1024
    assert opts.write_buffer_size == 4 * 1024 * 1024
    assert opts.max_write_buffer_number == 2
    opts.as_options()  # rocksdict accepts them


def test_defaults_are_bounded() -> None:
    settings = Settings(model=load_model(ROOT / "examples" / "team-chat.yaml"))
    o = settings.rocksdb_options()
    per_db = o["block_cache_size"] + o["write_buffer_size"] * o["max_write_buffer_number"]
    assert per_db <= 64 * 1024 * 1024
