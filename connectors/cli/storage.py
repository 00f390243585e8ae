"""`deeplens storage`: register, list and remove storage locations."""

from __future__ import annotations

import click
from rich.table import Table

from deeplens.connectors import registry, storage
from deeplens.connectors.cleanup.files import with_quarantine_excluded
from deeplens.connectors.cli.common import echo_json, out, weaviate_database
from deeplens.schema.models import StorageLocation


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
@click.option("--reference", is_flag=True,
              help="A reference location: cleanups keep its copies first and never touch its files.")
def storage_add(name, url, options, include, exclude, credentials_env, reference) -> None:
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
            reference=reference,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        storage.check_reachable(location.url, location.options, location.credentials_env)
    except storage.StorageError as exc:
        raise click.ClickException(f"storage location '{name}' is not usable: {exc}") from None
    with weaviate_database() as client:
        registry.save_location(client, with_quarantine_excluded(location))
    kind = "reference location" if reference else "storage location"
    click.echo(f"Added {kind} '{name}' ({url}). Scan it with `deeplens scan {name}`.")


@storage_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def storage_list(as_json: bool) -> None:
    """List storage locations and their last scan."""
    with weaviate_database() as client:
        locations = registry.list_locations(client)
    if as_json:
        echo_json([loc.model_dump(mode="json", exclude={"last_scan"}) | {"last_scan": _scan_brief(loc)} for loc in locations])
        return
    table = Table("name", "url", "include", "exclude", "reference", "last scan")
    for loc in locations:
        brief = _scan_brief(loc)
        last = f"{brief['finished_at']}: {brief['new']} new, {brief['errors']} errors" if brief else "never"
        table.add_row(loc.name, loc.url, ", ".join(loc.include), ", ".join(loc.exclude), "yes" if loc.reference else "",
                      last)
    out.print(table)


def _scan_brief(location: StorageLocation) -> dict | None:
    return {k: v for k, v in location.last_scan.items() if k != "error_list"} if location.last_scan else None


@storage_group.command("remove")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete the location's indexed images.")
def storage_remove(name: str, purge: bool) -> None:
    """Unregister a storage location (its images stay indexed unless --purge)."""
    with weaviate_database() as client:
        deleted = registry.remove_location(client, name, purge)
    click.echo(f"Removed '{name}'" + (f" and {deleted} indexed images." if purge else "."))
