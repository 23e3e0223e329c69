"""Model lifecycle in the worker: a model file watched and announced on the control topic
(`control`), the app's model history every worker reads from it (`switchlog`), which version
decides in each partition and when it switches (`versions`), the sweeps over a partition's
accounts that switch or start a shadow (`sweeps`), the backfill of a model with other signals
(`backfill`), and `pql shadow list|stop` (`shadow_cli`). What a switch, a shadow or a backfill
does to an account is the core's: `streams.scoring.switch`, `.shadow`, `.backfill`."""
