"""`deeplens scan`: index new and changed images of storage locations."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from urllib.parse import urlsplit

import click
import httpx
from elastic_transport import TransportError
from rich.table import Table
from weaviate.exceptions import WeaviateBaseError

from deeplens.connectors import registry, storage
from deeplens.connectors.cli.common import echo_json, elasticsearch_client, out, progress, weaviate_database
from deeplens.connectors.cli.common import settings as current_settings


@click.command("scan")
@click.argument("names", nargs=-1)
@click.option("--all", "scan_all", is_flag=True, help="Scan every registered location.")
@click.option("--errors", "show_errors", is_flag=True, help="Show the per-file errors of the last scan instead.")
@click.option("--workers", default=8, show_default=True, help="Concurrent file reads (SFTP reads one at a time: its session serves one reader).")
@click.option("--json", "as_json", is_flag=True)
def scan_command(names, scan_all, show_errors, workers, as_json) -> None:
    """Index new and changed images of storage locations; remove deleted ones."""
    from deeplens.connectors.scan import scan

    settings = current_settings()
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
                    click.echo(f"  {row['uri']}: {printable(row['error'])}")
            return
        with elasticsearch_client() if settings.es_url else nullcontext() as es:
            elasticsearch = _elasticsearch_target(es) if es is not None else None
            summaries, failures = [], []
            for location in locations:
                try:
                    with progress() as bar:
                        task = bar.add_task(f"scan {location.name}", total=None)
                        summary = scan(
                            client, location, settings.modules_url, workers=workers,
                            on_total=lambda total: bar.update(task, total=total),
                            on_done=lambda count: bar.advance(task, count),
                            elasticsearch=elasticsearch,
                        )
                except (storage.StorageError, RuntimeError, WeaviateBaseError, httpx.HTTPError, TransportError) as exc:
                    failures.append(_stopped(location.name, exc))
                    continue
                summaries.append(summary)
            if elasticsearch is not None and any(s.deleted or s.changed for s in summaries):
                from deeplens.ingest.setup import rebuild_transforms

                # Deleted and changed copies leave stale duplicate groups a continuous transform never
                # revisits: rebuilt once, after every location of the command is scanned.
                rebuild_transforms(es)
    if as_json:
        echo_json([{k: v for k, v in s.__dict__.items() if k != "error_list"} for s in summaries])
    else:
        _print_table(summaries)
    for failure in failures:
        click.echo(failure, err=True)
    if failures:
        sys.exit(1)


def _elasticsearch_target(es):
    """Where the scan also writes, with the pipeline `deeplens es setup` installed."""
    from deeplens.connectors.scan import ElasticsearchTarget
    from deeplens.ingest.setup import SetupError, configured_pipeline

    try:
        return ElasticsearchTarget(es, configured_pipeline(es))
    except SetupError as exc:
        raise click.ClickException(str(exc)) from None


def _stopped(name: str, exc: Exception) -> str:
    """Why the scan of a location stopped, and what to do about it."""
    settings = current_settings()
    if isinstance(exc, storage.StorageError):
        cause = str(exc)  # says what failed and what to check
    elif urlsplit(settings.modules_url).netloc in str(exc) or (
            _caused_by(exc, httpx.HTTPError) and not _caused_by(exc, WeaviateBaseError)):
        # The first: Weaviate's vectorizer module could not reach the module server. The second: the
        # scan's own calls (weaviate-client's HTTP errors are httpx's too: a Weaviate timeout is Weaviate's).
        cause = (f"the module server at {settings.modules_url} failed: {exc}. Check that it runs (`deeplens "
                 "status`; `deeplens up` starts the embedded one) and DEEPLENS_MODULES_URL / DEEPLENS_MODULES_API_KEY")
    elif _caused_by(exc, WeaviateBaseError) and "read-only due to" in str(exc):
        # Weaviate turns read-only when its disk (or memory) is nearly full, and writable again
        # once it is not: `store is read-only due to: resource pressure`.
        embedded = settings.weaviate_data_path
        data = f"{embedded} (the data dir)" if embedded.is_dir() else "Weaviate's data (PERSISTENCE_DATA_PATH)"
        cause = (f"Weaviate at {settings.weaviate_url} refuses writes: {exc}: no space left on the disk of {data}, "
                 "or too little memory. Free space there, or move the data dir to a larger disk "
                 "(DEEPLENS_DATA_DIR / --data-dir)")
    elif _caused_by(exc, WeaviateBaseError):
        cause = (f"Weaviate at {settings.weaviate_url} failed: {exc}. Check that it runs (`deeplens status`; "
                 "`deeplens up` starts the embedded one)")
    elif settings.es_url and _caused_by(exc, TransportError):
        cause = (f"Elasticsearch at {storage.errors.safe_url(settings.es_url)} failed: {exc}. Check that it runs "
                 "and that DEEPLENS_ES_URL points at it")
    else:
        raise exc  # not a failure of a service: a bug, shown with its traceback
    return (f"scan of '{name}' stopped: {printable(cause).rstrip('.')}. Nothing that still exists was removed from "
            f"the index, and what was indexed before the failure stays; run `deeplens scan {name}` again once this is fixed: "
            "it reads only what is not indexed yet.")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(e, kind) for e in storage.errors.chain(exc))


def printable(text: str) -> str:
    """Control characters (a newline in a file name, an escape sequence) shown escaped, so one
    line of output stays one line and cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _print_table(summaries) -> None:
    if not summaries:
        return
    table = Table("location", "new", "changed", "unchanged", "deleted", "not images", "errors", "MB read", "images/s")
    for s in summaries:
        table.add_row(s.location, str(s.new), str(s.changed), str(s.unchanged), str(s.deleted),
                      str(s.skipped_not_images), str(s.errors), f"{s.bytes_read / 1e6:.1f}", f"{s.images_per_second:.1f}")
    out.print(table)
    if any(s.errors for s in summaries):
        click.echo("Some files could not be indexed; see `deeplens scan --errors NAME`.", err=True)
