"""`deeplens stats`: images, bytes and reclaimable bytes per storage location."""

from __future__ import annotations

import click
from rich.table import Table

from deeplens.connectors.cli.common import backend_option, echo_json, human_size, out, progress, query_backend
from deeplens.connectors.queries.stats import location_stats


@click.command("stats")
@click.option("--near", is_flag=True,
              help="Also the bytes a cleanup of near copies would reclaim (runs the near-duplicate search).")
@click.option("--json", "as_json", is_flag=True)
@backend_option
def stats_command(near: bool, as_json: bool, backend: str) -> None:
    """Images, bytes and the bytes a cleanup would reclaim per storage location: exact copies, and
    with --near exact and near copies (what `deeplens plan` acts on by default)."""
    with query_backend(backend) as (queries, modules), progress() as bar:
        task = bar.add_task("near-duplicate search", total=None, visible=near)
        rows = location_stats(queries, modules, near=near, on_total=lambda t: bar.update(task, total=t),
                              on_done=lambda n: bar.advance(task, n))
    if as_json:
        echo_json({"locations": rows})
        return
    table = Table("location", "images", "size", "reclaimable: exact", *(["exact + near"] if near else []))
    for row in rows:
        table.add_row(row["location"], str(row["images"]), human_size(row["bytes"]), human_size(row["duplicate_bytes"]),
                      *([human_size(row["near_duplicate_bytes"])] if near else []))
    out.print(table)
