"""`deeplens duplicates --folders`: pairs of folders whose images are largely the same.

An option pair on `duplicates` (folders_option), so the group options (--exact/--near, distances,
--location, --backend, --json) mean the same with it; the query is queries/folders.py.
"""

from __future__ import annotations

import functools

import click
from rich.table import Table

from deeplens.connectors.cli.common import echo_json, find_duplicates, human_size, out, progress, query_backend
from deeplens.connectors.queries.folders import DEFAULT_MIN_OVERLAP, folder_pairs


def folders_option(command):
    """Adds --folders and --min-overlap to the duplicates command: with --folders it reports
    folder pairs instead of groups."""

    @functools.wraps(command)
    def duplicates_or_folders(*args, folders: bool, min_overlap: float, **options):
        if not folders:
            return command(*args, **options)
        return folder_report(min_overlap=min_overlap, **options)

    duplicates_or_folders = click.option(
        "--min-overlap", type=click.FloatRange(0, 1), default=DEFAULT_MIN_OVERLAP, show_default=True,
        help="--folders: least share of distinct images two folders have in common.")(duplicates_or_folders)
    return click.option(
        "--folders", is_flag=True,
        help="Pairs of folders (within or across locations) whose images are largely the same, exact or "
             "with --near also near copies: overlap, shared and unique images, bytes a cleanup would reclaim.",
    )(duplicates_or_folders)


def folder_report(mode: str, max_distance: int, max_semantic_distance: float, locations, as_json: bool,
                  backend: str, min_overlap: float, **_other_duplicates_options) -> None:
    locations = list(locations) or None
    with query_backend(backend) as (queries, modules):
        with progress() as bar:
            groups = find_duplicates(bar, queries, modules, mode == "near", locations, max_distance,
                                     max_semantic_distance).groups
        pairs = folder_pairs(queries, groups, min_overlap, locations)
    if as_json:
        echo_json({"folders": pairs, "min_overlap": min_overlap})
        return
    table = Table("overlap", "shared", "unique A", "unique B", "reclaimable", "folder A", "folder B")
    for pair in pairs:
        table.add_row(f"{pair['overlap']:.0%}", str(pair["shared"]), str(pair["unique_a"]), str(pair["unique_b"]),
                      human_size(pair["reclaimable_bytes"]), pair["a"]["folder"], pair["b"]["folder"])
    out.print(table)
    click.echo(f"{len(pairs)} folder pairs with at least {min_overlap:.0%} of their images in common.")
