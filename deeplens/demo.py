"""`deeplens demo`: the main job on bundled sample photos, offline, against the embedded stack."""

from __future__ import annotations

import click

from deeplens.config import Settings
from deeplens.samples import write_demo_locations


@click.command("demo")
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Start the stack, index two sample locations, show duplicates, a similarity search, a cleanup
    plan and an HTML review report."""
    from deeplens.cli import up
    from deeplens.connectors.cli import duplicates_command, plan_command, report_command, scan_command, search_command
    from deeplens.connectors.cli.storage import storage_add

    settings: Settings = ctx.find_object(Settings)
    step = lambda text: click.secho(f"\n==> {text}", bold=True)  # noqa: E731

    step("Starting the embedded stack (module server + Weaviate)")
    ctx.invoke(up)

    root = settings.data_dir / "demo"
    step(f"Writing sample photos and edited copies into {root}")
    folders = write_demo_locations(root)
    for name, folder in folders.items():
        click.echo(f"  {name}: {sum(1 for p in folder.rglob('*') if p.is_file())} images in {folder}")

    step("Registering the two storage locations")
    for name, folder in folders.items():
        ctx.invoke(storage_add, name=name, url=str(folder))

    step("Scanning both locations")
    ctx.invoke(scan_command, names=tuple(folders))

    step("Exact duplicates (byte-identical copies)")
    ctx.invoke(duplicates_command, mode="exact")

    step("Near-duplicates (recompressed, resized, cropped, rotated, mirrored, ... copies)")
    ctx.invoke(duplicates_command, mode="near")

    query = folders["archive"] / "coffee.jpg"
    step(f"Images most similar to {query}")
    ctx.invoke(search_command, image=str(query), limit=5)

    plan_file = root / "plan.json"
    step(f"A cleanup plan (nothing is changed; `deeplens apply {plan_file} --yes` would act on it)")
    ctx.invoke(plan_command, out_path=plan_file, show_groups=True)

    step("A review report of the groups and the plan: an HTML page to open from disk")
    ctx.invoke(report_command, out_path=root / "report", mode="near", plan_file=plan_file)

    env = f"DEEPLENS_DATA_DIR={settings.data_dir}" if "DEEPLENS_DATA_DIR" in __import__("os").environ else ""
    # Weaviate wants its API key; print where it is, never the key itself.
    key = "$DEEPLENS_WEAVIATE_API_KEY" if settings.weaviate_api_key else f"$(cat {settings.weaviate_key_path})"
    auth = f'-H "Authorization: Bearer {key}"'
    step("The stack keeps running. Try:")
    click.echo(f"""  {env} .venv/bin/deeplens duplicates --near --json
  {env} .venv/bin/deeplens search --image {query} --near-dup
  {env} .venv/bin/deeplens stats

  Weaviate GraphQL, e.g. five indexed images:
  curl -s {settings.weaviate_url}/v1/graphql {auth} -H 'Content-Type: application/json' -d '{{"query":
    "{{ Get {{ DeepLensImage(limit: 5) {{ uri size_bytes phash _additional {{ id }} }} }} }}"}}'

  Exact duplicate groups by content hash:
  curl -s {settings.weaviate_url}/v1/graphql {auth} -H 'Content-Type: application/json' -d '{{"query":
    "{{ Aggregate {{ DeepLensImage(groupBy: [\\"content_sha256\\"]) {{ groupedBy {{ value }} meta {{ count }} }} }} }}"}}'

  Stop it with: {env} .venv/bin/deeplens down""")
