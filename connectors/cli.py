"""CLI commands that work on the database: schema, storage locations, scan, search, duplicates, stats.
Every read command takes --json; long work shows a progress bar on stderr."""

from __future__ import annotations

import csv
import json
import sys
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from deeplens.config import Settings
from deeplens.connectors import duplicates as dup
from deeplens.connectors import registry, storage
from deeplens.connectors.search import read_query_image, search_image, search_text
from deeplens.connectors.weaviate_client import DatabaseUnavailable, connect
from deeplens.modules.images import BadImage
from deeplens.schema.models import StorageLocation
from deeplens.schema.weaviate import IMAGE_COLLECTION, NoSemanticVectors, SchemaConflict, apply_schema, is_hash_only
from weaviate.exceptions import WeaviateQueryError

console = Console(stderr=True)
# Tables go to stdout; when it is a pipe or file, do not cut them to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)


def _settings() -> Settings:
    return click.get_current_context().find_object(Settings)


@contextmanager
def database(apply: bool = True):
    """A Weaviate client with the DeepLens schema in place; errors become clean CLI messages."""
    settings = _settings()
    try:
        client = connect(settings)
    except DatabaseUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if apply:
            apply_schema(client, settings.modules_url)
        yield client
    except (SchemaConflict, NoSemanticVectors, registry.UnknownLocation, storage.StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )


def _echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group("schema")
def schema_group() -> None:
    """The Weaviate collections DeepLens writes."""


@schema_group.command("apply")
@click.option("--hash-only", is_flag=True,
              help="Create the image collection with the pHash vector alone: scans run no embedding model "
                   "(several times faster), for exact and pHash near-duplicates; no similarity search.")
def schema_apply(hash_only: bool) -> None:
    """Create or update the collections; idempotent; refuses incompatible existing ones.

    Other commands create the full collection (semantic + phash vectors) when none exists; run
    `deeplens schema apply --hash-only` before the first scan for a hash-only one.
    """
    settings = _settings()
    with database(apply=False) as client:
        try:
            changes = apply_schema(client, settings.modules_url, hash_only=True if hash_only else None)
        except SchemaConflict as exc:
            raise click.ClickException(str(exc)) from None
    click.echo("\n".join(changes) if changes else "Schema is up to date.")


@click.group("storage")
def storage_group() -> None:
    """Register, list and remove storage locations."""


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got '{value}'", param_hint=what)
        out[key] = val
    return out


@storage_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Non-secret fsspec option.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only paths matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip paths matching (repeatable).")
@click.option("--credentials-env", multiple=True, metavar="OPTION=ENV_VAR",
              help="Take fsspec option OPTION from environment variable ENV_VAR (never stored).")
def storage_add(name, url, options, include, exclude, credentials_env) -> None:
    """Add (or update) a storage location NAME at fsspec URL, after checking it is reachable.

    \b
    Examples:
      deeplens storage add photos /srv/photos
      deeplens storage add bucket s3://images/2024 --option endpoint_url=http://127.0.0.1:8333 \\
          --credentials-env key=S3_KEY --credentials-env secret=S3_SECRET
      deeplens storage add nas sftp://nas.local/share --option username=me --credentials-env password=NAS_PW
    """
    try:
        location = StorageLocation(
            name=name, url=url, options=_pairs(options, "--option"), include=list(include),
            exclude=list(exclude), credentials_env=_pairs(credentials_env, "--credentials-env"),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        storage.check_reachable(location.url, location.options, location.credentials_env)
    except storage.StorageError as exc:
        raise click.ClickException(f"storage location '{name}' is not usable: {exc}") from None
    with database() as client:
        registry.save_location(client, location)
    click.echo(f"Added storage location '{name}' ({url}). Scan it with `deeplens scan {name}`.")


@storage_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def storage_list(as_json: bool) -> None:
    """List storage locations and their last scan."""
    with database() as client:
        locations = registry.list_locations(client)
    if as_json:
        _echo_json([loc.model_dump(mode="json", exclude={"last_scan"}) | {"last_scan": _scan_brief(loc)} for loc in locations])
        return
    table = Table("name", "url", "include", "exclude", "last scan")
    for loc in locations:
        brief = _scan_brief(loc)
        last = f"{brief['finished_at']}: {brief['new']} new, {brief['errors']} errors" if brief else "never"
        table.add_row(loc.name, loc.url, ", ".join(loc.include), ", ".join(loc.exclude), last)
    out.print(table)


def _scan_brief(location: StorageLocation) -> dict | None:
    return {k: v for k, v in location.last_scan.items() if k != "error_list"} if location.last_scan else None


@storage_group.command("remove")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete the location's indexed images.")
def storage_remove(name: str, purge: bool) -> None:
    """Unregister a storage location (its images stay indexed unless --purge)."""
    with database() as client:
        deleted = registry.remove_location(client, name, purge)
    click.echo(f"Removed '{name}'" + (f" and {deleted} indexed images." if purge else "."))


@click.command("scan")
@click.argument("names", nargs=-1)
@click.option("--all", "scan_all", is_flag=True, help="Scan every registered location.")
@click.option("--errors", "show_errors", is_flag=True, help="Show the per-file errors of the last scan instead.")
@click.option("--workers", default=8, show_default=True, help="Concurrent file reads.")
@click.option("--json", "as_json", is_flag=True)
def scan_command(names, scan_all, show_errors, workers, as_json) -> None:
    """Index new and changed images of storage locations; remove deleted ones."""
    from deeplens.connectors.scan import ElasticsearchTarget, scan

    settings = _settings()
    elasticsearch = None
    if settings.es_url:
        from deeplens.ingest.client import connect as connect_elasticsearch
        from deeplens.ingest.setup import configured_pipeline

        from deeplens.ingest.setup import SetupError

        es_client = connect_elasticsearch(settings)
        try:
            elasticsearch = ElasticsearchTarget(es_client, configured_pipeline(es_client))
        except SetupError as exc:
            raise click.ClickException(str(exc)) from None
    with database() as client:
        locations = registry.list_locations(client) if scan_all else [registry.get_location(client, n) for n in names]
        if not locations:
            raise click.UsageError("name one or more locations, or --all (see `deeplens storage list`)")
        if show_errors:
            errors = {loc.name: (loc.last_scan or {}).get("error_list", []) for loc in locations}
            if as_json:
                _echo_json(errors)
            for name, rows in ([] if as_json else errors.items()):
                click.echo(f"{name}: {len(rows)} errors in the last scan")
                for row in rows:
                    click.echo(f"  {row['uri']}: {row['error']}")
            return
        summaries = []
        for location in locations:
            with _progress() as bar:
                task = bar.add_task(f"scan {location.name}", total=None)
                summary = scan(
                    client, location, settings.modules_url, workers=workers,
                    on_total=lambda total: bar.update(task, total=total),
                    on_done=lambda count: bar.advance(task, count),
                    elasticsearch=elasticsearch,
                )
            summaries.append(summary)
    if as_json:
        _echo_json([{k: v for k, v in s.__dict__.items() if k != "error_list"} for s in summaries])
        return
    table = Table("location", "new", "changed", "unchanged", "deleted", "not images", "errors", "MB read", "images/s")
    for s in summaries:
        table.add_row(s.location, str(s.new), str(s.changed), str(s.unchanged), str(s.deleted),
                      str(s.skipped_not_images), str(s.errors), f"{s.bytes_read / 1e6:.1f}", f"{s.images_per_second:.1f}")
    out.print(table)
    if any(s.errors for s in summaries):
        click.echo("Some files could not be indexed; see `deeplens scan --errors NAME`.", err=True)


def backend_option(command):
    return click.option(
        "--backend", type=click.Choice(["weaviate", "elasticsearch"]), default="weaviate", show_default=True,
        help="Which database answers (elasticsearch needs DEEPLENS_ES_URL and scans with it set).",
    )(command)


@contextmanager
def elasticsearch_client():
    from deeplens.ingest.client import ElasticsearchNotConfigured, connect as connect_elasticsearch

    try:
        yield connect_elasticsearch(_settings())
    except ElasticsearchNotConfigured as exc:
        raise click.ClickException(str(exc)) from None


@click.command("search")
@click.option("--image", "image", metavar="PATH_OR_URL", help="Find images like this one.")
@click.option("--text", metavar="TEXT", help="Find images matching this text (clip profile).")
@click.option("--limit", default=10, show_default=True)
@click.option("--location", "locations", multiple=True, help="Only these locations (repeatable).")
@click.option("--near-dup", is_flag=True, help="Near-duplicates of --image by pHash (incl. rotations/mirrors).")
@click.option("--max-distance", default=dup.DEFAULT_MAX_DISTANCE, show_default=True, help="Hamming bits for --near-dup.")
@click.option("--json", "as_json", is_flag=True)
@backend_option
def search_command(image, text, limit, locations, near_dup, max_distance, as_json, backend) -> None:
    """Similarity search by image or text."""
    if bool(image) == bool(text):
        raise click.UsageError("give exactly one of --image or --text")
    if near_dup and not image:
        raise click.UsageError("--near-dup needs --image")
    if text and backend == "elasticsearch":
        raise click.UsageError("--text is answered by Weaviate only (its clip module embeds the text)")
    settings = _settings()
    locations = list(locations) or None
    try:
        data = read_query_image(image) if image else None
        if backend == "elasticsearch":
            from deeplens.connectors import es_search

            with elasticsearch_client() as es:
                hits = es_search.search_image(es, data, settings.modules_url, limit, locations, near_dup, max_distance)
        else:
            with database() as client:
                if image:
                    hits = search_image(client, data, settings.modules_url, limit, locations, near_dup, max_distance)
                else:
                    hits = search_text(client, text, limit, locations)
    except (OSError, BadImage) as exc:
        raise click.ClickException(f"cannot read query image {image}: {exc}") from None
    except WeaviateQueryError as exc:  # Weaviate relays module errors, e.g. text on the offline profile
        raise click.ClickException(f"Weaviate could not answer: {exc.message}") from None
    if as_json:
        _echo_json({"hits": hits})
        return
    score = "hamming_distance" if near_dup else "distance"
    table = Table(score, "location", "uri", "size", "width x height")
    for hit in hits:
        table.add_row(str(hit[score]), hit["location"], hit["uri"], str(hit["size_bytes"]), f"{hit['width']}x{hit['height']}")
    out.print(table)


@click.command("duplicates")
@click.option("--exact", "mode", flag_value="exact", default=True, help="Byte-identical copies (default).")
@click.option("--near", "mode", flag_value="near", help="Near-duplicates by pHash; includes exact copies.")
@click.option("--max-distance", default=dup.DEFAULT_MAX_DISTANCE, show_default=True,
              help="--near: most pHash bits (of 64) that may differ.")
@click.option("--max-semantic-distance", default=dup.DEFAULT_MAX_SEMANTIC_DISTANCE, show_default=True,
              help="--near: most cosine distance of the semantic embeddings (catches crops, borders, "
                   "watermarks); 0 turns it off.")
@click.option("--location", "locations", multiple=True, help="Only these locations (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@backend_option
def duplicates_command(mode, max_distance, max_semantic_distance, locations, as_json, as_csv, backend) -> None:
    """Duplicate groups and the bytes they waste (group total minus the kept copy)."""
    locations = list(locations) or None
    if backend == "elasticsearch":
        from deeplens.connectors import es_search as queries

        connection = elasticsearch_client()
    else:
        queries, connection = dup, database()
    with connection as db:
        if mode == "near" and backend == "weaviate" and is_hash_only(db):
            console.print("Hash-only collection: near duplicates by pHash (rotations and mirrors included) only; "
                          "crops, borders and watermarks need the semantic vectors.")
        if mode == "near":
            with _progress() as bar:
                task = bar.add_task("near-duplicate search", total=None)
                groups = queries.near_groups(db, max_distance, max_semantic_distance, locations,
                                             on_total=lambda t: bar.update(task, total=t),
                                             on_done=lambda n: bar.advance(task, n))
        else:
            groups = queries.exact_groups(db, locations)
    total = sum(g.wasted_bytes for g in groups)
    if as_json:
        _echo_json({"groups": [g.as_json() for g in groups], "total_wasted_bytes": total})
        return
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["group", "kind", "kept", "uri", "location", "size_bytes", "distance", "group_wasted_bytes"])
        for number, group in enumerate(groups, 1):
            for index, m in enumerate(group.members):
                writer.writerow([number, group.kind, index == 0, m.uri, m.location, m.size_bytes, m.distance, group.wasted_bytes])
        return
    for number, group in enumerate(groups, 1):
        click.echo(f"group {number} ({group.kind}, {len(group.members)} copies, wastes {_size(group.wasted_bytes)}):")
        for index, m in enumerate(group.members):
            click.echo(f"  {'keep' if index == 0 else '    '} d={m.distance:<2} {_size(m.size_bytes):>9}  {m.uri}")
    click.echo(f"{len(groups)} groups, {_size(total)} wasted in total.")


@click.command("stats")
@click.option("--json", "as_json", is_flag=True)
def stats_command(as_json: bool) -> None:
    """Images, bytes and exact-duplicate bytes per storage location."""
    from weaviate.classes.aggregate import GroupByAggregate
    from weaviate.classes.query import Metrics

    with database() as client:
        collection = client.collections.use(IMAGE_COLLECTION)
        per_location = collection.aggregate.over_all(
            group_by=GroupByAggregate(prop="location"),
            return_metrics=Metrics("size_bytes").integer(sum_=True, count=True),
            total_count=True,
        )
        groups = dup.exact_groups(client)
    rows = {
        g.grouped_by.value: {"location": g.grouped_by.value, "images": g.total_count,
                             "bytes": g.properties["size_bytes"].sum_ or 0, "duplicate_bytes": 0}
        for g in per_location.groups
    }
    for group in groups:
        for member in group.members[1:]:  # what would be removed, charged to its location
            rows[member.location]["duplicate_bytes"] += member.size_bytes
    result = sorted(rows.values(), key=lambda r: r["location"])
    if as_json:
        _echo_json({"locations": result})
        return
    table = Table("location", "images", "size", "exact-duplicate bytes")
    for r in result:
        table.add_row(r["location"], str(r["images"]), _size(r["bytes"]), _size(r["duplicate_bytes"]))
    out.print(table)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


COMMANDS = [schema_group, storage_group, scan_command, search_command, duplicates_command, stats_command]
