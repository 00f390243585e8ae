"""`deeplens duplicates`: exact and near-duplicate groups and the bytes they waste."""

from __future__ import annotations

import csv
import sys

import click

from deeplens.connectors.cli.common import backend_option, console, echo_json, human_size, progress, query_backend
from deeplens.connectors.queries import grouping

CSV_COLUMNS = ["group", "kind", "kept", "uri", "location", "size_bytes", "distance", "group_wasted_bytes"]


@click.command("duplicates")
@click.option("--exact", "mode", flag_value="exact", default=True, help="Byte-identical copies (default).")
@click.option("--near", "mode", flag_value="near", help="Near-duplicates by pHash; includes exact copies.")
@click.option("--max-distance", default=grouping.DEFAULT_MAX_DISTANCE, show_default=True,
              help="--near: most pHash bits (of 64) that may differ.")
@click.option("--max-semantic-distance", default=grouping.DEFAULT_MAX_SEMANTIC_DISTANCE, show_default=True,
              help="--near: most cosine distance of the semantic embeddings (catches crops, borders, "
                   "watermarks); 0 turns it off.")
@click.option("--location", "locations", multiple=True, help="Only these locations (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True, help="One row per member, with its group's number.")
@backend_option
def duplicates_command(mode, max_distance, max_semantic_distance, locations, as_json, as_csv, backend) -> None:
    """Duplicate groups and the bytes they waste (group total minus the kept copy)."""
    locations = list(locations) or None
    with query_backend(backend) as (queries, _):
        if mode == "near":
            if max_semantic_distance > 0 and queries.hash_only():
                console.print("Hash-only index: near duplicates by pHash (rotations and mirrors included) only; "
                              "crops, borders and watermarks need the semantic vectors.")
            with progress() as bar:
                task = bar.add_task("near-duplicate search", total=None)
                groups = grouping.near_groups(queries, max_distance, max_semantic_distance, locations,
                                              on_total=lambda t: bar.update(task, total=t),
                                              on_done=lambda n: bar.advance(task, n))
        else:
            groups = grouping.exact_groups(queries, locations)
    total = sum(g.wasted_bytes for g in groups)
    if as_json:
        echo_json({"groups": [g.as_json() for g in groups], "total_wasted_bytes": total})
        return
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(CSV_COLUMNS)
        for number, group in enumerate(groups, 1):
            for index, m in enumerate(group.members):
                writer.writerow([number, group.kind, index == 0, m.uri, m.location, m.size_bytes, m.distance, group.wasted_bytes])
        return
    for number, group in enumerate(groups, 1):
        click.echo(f"group {number} ({group.kind}, {len(group.members)} copies, wastes {human_size(group.wasted_bytes)}):")
        for index, m in enumerate(group.members):
            click.echo(f"  {'keep' if index == 0 else '    '} d={m.distance:<2} {human_size(m.size_bytes):>9}  {m.uri}")
    click.echo(f"{len(groups)} groups, {human_size(total)} wasted in total.")
