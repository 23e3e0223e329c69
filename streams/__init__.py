"""pql-streams: real-time Product-Qualified Lead detection over Kafka.

The functional core (`events`, `model`, `state`, `scoring`, `backtest`) never imports Kafka;
the Faust shell lives in `app`, the embedded broker in `broker`, Kafka tools in `io`.
"""

from streams import native as _native

__version__ = "0.1.0"

# The compiled core if there is one for these sources (`streams.native`; PQL_ENGINE chooses).
_native.activate(__path__)
