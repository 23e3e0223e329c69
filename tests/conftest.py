"""In-process tests run the pure-Python engine, the reference (`streams.native`): set before
anything imports `streams`. Processes the tests start with a cleared PQL_* environment (the
workers) take the compiled core when `make native` built it, so every parity test compares the
compiled worker with the pure backtest; tests/unit/native compares the two engines directly."""

import os

os.environ.setdefault("PQL_ENGINE", "python")
