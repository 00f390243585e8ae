"""`deeplens report`: the duplicate groups as a static HTML page to review by eye
(connectors/report/build.py writes it)."""

from __future__ import annotations

from pathlib import Path

import click

from deeplens.connectors import registry
from deeplens.connectors.cleanup.plan import BadPlan, load
from deeplens.connectors.cli.common import (
    backend_option,
    console,
    find_duplicates,
    human_size,
    progress,
    query_backend,
    weaviate_database,
)
from deeplens.connectors.queries import grouping
from deeplens.connectors.queries.folders import folder_pairs
from deeplens.connectors.report.build import ReportInput, write_report


@click.command("report")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="A folder (index.html and its data files go into it) or a file ending in .html.")
@click.option("--exact", "mode", flag_value="exact", default=True, help="Byte-identical copies (default).")
@click.option("--near", "mode", flag_value="near",
              help="Also near and derived copies, with their tiers and evidence (as `duplicates --near`).")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A plan from `deeplens plan --out`: show the action planned for each file and the keep rule "
                   "that chose each kept copy.")
@click.option("--max-distance", default=grouping.DEFAULT_MAX_DISTANCE, show_default=True,
              help="--near: most pHash bits (of 64) that may differ.")
@click.option("--max-semantic-distance", default=grouping.DEFAULT_MAX_SEMANTIC_DISTANCE, show_default=True,
              help="--near: most cosine distance of a candidate that geometric verification then checks.")
@click.option("--location", "locations", multiple=True, help="Only these locations (repeatable).")
@backend_option
def report_command(out_path: Path, mode: str, plan_file: Path | None, max_distance: int,
                   max_semantic_distance: float, locations, backend: str) -> None:
    """Write a review report: an HTML page that opens from disk with no server and no network.

    An overview (images, bytes, wasted bytes per location and tier, the largest groups, folders
    holding the same images) and every group side by side with its thumbnails, the kept copy
    marked, tiers and evidence; paged, filtered and searched in the page itself.
    """
    locations = list(locations) or None
    plan = _plan(plan_file) if plan_file else None
    if plan and mode == "exact" and set(plan.tiers) - {"exact"}:
        console.print(f"The plan acts on {', '.join(plan.tiers)} copies: reporting near groups too (--near).")
        mode = "near"
    with query_backend(backend) as (queries, modules):
        totals = {name: counts for name, counts in queries.location_totals().items()
                  if not locations or name in locations}
        if not sum(images for images, _ in totals.values()):
            where = f"locations {', '.join(locations)}" if locations else "index"
            raise click.ClickException(
                f"the {where} holds no images, so there is nothing to report (no page was written). Add and scan "
                "a location first: `deeplens storage add NAME URL`, then `deeplens scan --all`.")
        with progress() as bar:
            groups = find_duplicates(bar, queries, modules, mode == "near", locations, max_distance,
                                     max_semantic_distance).groups
            pairs = folder_pairs(queries, groups, locations=locations)
            task = bar.add_task("writing the report", total=len(groups))
            page = write_report(ReportInput(groups, totals, queries.name, mode, pairs, plan), out_path,
                                queries.thumbnails, on_done=lambda n: bar.advance(task, n))
    wasted = sum(g.wasted_bytes for g in groups)
    click.echo(f"{len(groups)} groups ({human_size(wasted)} wasted) in the report: {page.resolve()}")
    click.echo(f"Open it in a browser: {page.resolve().as_uri()}")


def _plan(plan_file: Path):
    with weaviate_database() as client:
        registered = {loc.name: loc for loc in registry.list_locations(client)}
    try:
        return load(plan_file, registered)
    except BadPlan as exc:
        raise click.ClickException(str(exc)) from None
