"""``tickvault config``: the settings in effect and where each came from, or the sample
settings file."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from tickvault.cli.output import console


@click.command("config")
@click.option("--sample", is_flag=True, help="Print a sample tickvault.toml with every default.")
@click.pass_context
def config_cmd(ctx: click.Context, sample: bool) -> None:
    """Print the settings in effect and where each came from (secrets hidden)."""
    from tickvault.config_doc import effective_settings, sample_toml

    if sample:
        click.echo(sample_toml(), nl=False)
        return
    config_path = (ctx.obj or {}).get("config_path")
    _, file_path, rows = effective_settings(config_path)
    from tickvault.config import DEFAULT_CONFIG_FILE

    where = f"file {file_path}" if file_path else f"no settings file ({DEFAULT_CONFIG_FILE} absent)"
    table = Table(title=Text(f"settings in effect: {where}"))
    for col in ("setting", "value", "from"):
        table.add_column(col)
    for row in rows:
        table.add_row(Text(row.name), Text(row.value), Text(row.source))
    console.print(table, highlight=False)
