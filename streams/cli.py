"""The `pql` command. Thin: each subcommand lives beside the code it drives and is imported
only when it runs, so `pql model check` never pays for importing Faust."""

from __future__ import annotations

import importlib
from typing import Any

import click

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "model": "streams.model.cli:model",
    "backtest": "streams.backtest.cli:backtest",
    "broker": "streams.broker.cli:broker",
    "worker": "streams.app.cli:worker",
    "shadow": "streams.app.lifecycle.shadow_cli:shadow",
    "produce": "streams.io.produce:produce",
    "tail": "streams.io.tail:tail",
    "lag": "streams.io.lag:lag",
    "simulate": "streams.io.simulate:simulate",
    "notify": "streams.notify.cli:notify",
    "fit": "streams.backtest.fit_cli:fit_command",
    "compare": "streams.backtest.compare_cli:compare",
    "merge-shards": "streams.backtest.merge_cli:merge_shards_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module: Any = importlib.import_module(module_name)
        command: click.Command = getattr(module, attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pql-streams")
def main() -> None:
    """Real-time Product-Qualified Lead detection on Kafka."""


if __name__ == "__main__":
    main()
