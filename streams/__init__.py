"""pql-streams: real-time Product-Qualified Lead detection over Kafka.

The functional core (`events`, `model`, `state`, `scoring`, `backtest`) never imports Kafka;
the Faust shell lives in `app`, the embedded broker in `broker`, Kafka tools in `io`.
"""

__version__ = "0.1.0"
