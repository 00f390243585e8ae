"""`deeplens dashboards ...`: Kibana saved objects. Registered on the main CLI with
`main.add_command(dashboards)`."""

from __future__ import annotations

from pathlib import Path

import click
import httpx

from deeplens.dashboards.assemble import ndjson


def import_objects(kibana_url: str, auth: tuple[str, str] | None = None, space: str | None = None) -> dict:
    """POST the assembled NDJSON to Kibana's import API (overwriting DeepLens' own objects)."""
    prefix = f"/s/{space}" if space else ""
    url = f"{kibana_url.rstrip('/')}{prefix}/api/saved_objects/_import"
    response = httpx.post(
        url,
        params={"overwrite": "true"},
        headers={"kbn-xsrf": "deeplens"},
        files={"file": ("deeplens.ndjson", ndjson().encode(), "application/ndjson")},
        auth=auth,
        timeout=60,
    )
    if response.status_code >= 400:
        raise click.ClickException(f"Kibana answered {response.status_code} at {url}: {response.text[:500]}")
    return response.json()


@click.group("dashboards")
def dashboards() -> None:
    """Kibana dashboards for duplicate analysis."""


@dashboards.command("install")
@click.option("--kibana-url", envvar="DEEPLENS_KIBANA_URL", required=True, help="Kibana URL. Env: DEEPLENS_KIBANA_URL.")
@click.option("--username", envvar="DEEPLENS_KIBANA_USERNAME", help="Env: DEEPLENS_KIBANA_USERNAME.")
@click.option("--password", envvar="DEEPLENS_KIBANA_PASSWORD", help="Env: DEEPLENS_KIBANA_PASSWORD.")
@click.option("--space", help="Kibana space id (default space if not given).")
def install(kibana_url: str, username: str | None, password: str | None, space: str | None) -> None:
    """Import the data views, Lens visualizations and the Duplicate analysis dashboard; idempotent."""
    try:
        result = import_objects(kibana_url, (username, password or "") if username else None, space)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach Kibana at {kibana_url}: {exc}") from exc
    if not result.get("success"):
        problems = "; ".join(f"{e.get('type')}/{e.get('id')}: {e.get('error')}" for e in result.get("errors", []))
        raise click.ClickException(f"Kibana imported {result.get('successCount', 0)} objects but failed on: {problems}")
    click.echo(f"Imported {result['successCount']} saved objects; open {kibana_url.rstrip('/')}/app/dashboards#/view/deeplens-duplicate-analysis")


@dashboards.command("export")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def export(output: Path) -> None:
    """Write the assembled NDJSON (for Kibana's Stack Management > Saved objects > Import)."""
    output.write_text(ndjson(), encoding="utf-8")
    click.echo(f"Wrote {output}")
