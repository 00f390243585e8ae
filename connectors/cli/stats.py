"""`deeplens stats`: images, bytes and exact-duplicate bytes per storage location."""

from __future__ import annotations

import click
from rich.table import Table

from deeplens.connectors.cli.common import backend_option, echo_json, human_size, out, query_backend
from deeplens.connectors.queries.stats import location_stats


@click.command("stats")
@click.option("--json", "as_json", is_flag=True)
@backend_option
def stats_command(as_json: bool, backend: str) -> None:
    """Images, bytes and exact-duplicate bytes per storage location."""
    with query_backend(backend) as (queries, _):
        rows = location_stats(queries)
    if as_json:
        echo_json({"locations": rows})
        return
    table = Table("location", "images", "size", "exact-duplicate bytes")
    for row in rows:
        table.add_row(row["location"], str(row["images"]), human_size(row["bytes"]), human_size(row["duplicate_bytes"]))
    out.print(table)
