"""`deeplens scan`: index new and changed images of storage locations."""

from __future__ import annotations

import click
from rich.table import Table

from deeplens.connectors import registry
from deeplens.connectors.cli.common import echo_json, out, progress, weaviate_database
from deeplens.connectors.cli.common import settings as current_settings


@click.command("scan")
@click.argument("names", nargs=-1)
@click.option("--all", "scan_all", is_flag=True, help="Scan every registered location.")
@click.option("--errors", "show_errors", is_flag=True, help="Show the per-file errors of the last scan instead.")
@click.option("--workers", default=8, show_default=True, help="Concurrent file reads.")
@click.option("--json", "as_json", is_flag=True)
def scan_command(names, scan_all, show_errors, workers, as_json) -> None:
    """Index new and changed images of storage locations; remove deleted ones."""
    from deeplens.connectors.scan import ElasticsearchTarget, scan

    settings = current_settings()
    elasticsearch = None
    if settings.es_url:
        from deeplens.ingest.client import connect as connect_elasticsearch
        from deeplens.ingest.setup import SetupError, configured_pipeline

        es_client = connect_elasticsearch(settings)
        try:
            elasticsearch = ElasticsearchTarget(es_client, configured_pipeline(es_client))
        except SetupError as exc:
            raise click.ClickException(str(exc)) from None
    with weaviate_database() as client:
        locations = registry.list_locations(client) if scan_all else [registry.get_location(client, n) for n in names]
        if not locations:
            raise click.UsageError("name one or more locations, or --all (see `deeplens storage list`)")
        if show_errors:
            errors = {loc.name: (loc.last_scan or {}).get("error_list", []) for loc in locations}
            if as_json:
                echo_json(errors)
            for name, rows in ([] if as_json else errors.items()):
                click.echo(f"{name}: {len(rows)} errors in the last scan")
                for row in rows:
                    click.echo(f"  {row['uri']}: {row['error']}")
            return
        summaries = []
        for location in locations:
            with progress() as bar:
                task = bar.add_task(f"scan {location.name}", total=None)
                summary = scan(
                    client, location, settings.modules_url, workers=workers,
                    on_total=lambda total: bar.update(task, total=total),
                    on_done=lambda count: bar.advance(task, count),
                    elasticsearch=elasticsearch,
                )
            summaries.append(summary)
    if as_json:
        echo_json([{k: v for k, v in s.__dict__.items() if k != "error_list"} for s in summaries])
        return
    table = Table("location", "new", "changed", "unchanged", "deleted", "not images", "errors", "MB read", "images/s")
    for s in summaries:
        table.add_row(s.location, str(s.new), str(s.changed), str(s.unchanged), str(s.deleted),
                      str(s.skipped_not_images), str(s.errors), f"{s.bytes_read / 1e6:.1f}", f"{s.images_per_second:.1f}")
    out.print(table)
    if any(s.errors for s in summaries):
        click.echo("Some files could not be indexed; see `deeplens scan --errors NAME`.", err=True)
