"""`deeplens es ...`: the Elasticsearch side of DeepLens. Registered on the main CLI with
`main.add_command(es)`; settings (es_url, modules_url) come from the main group."""

from __future__ import annotations

import json

import click
from elasticsearch import Elasticsearch

from deeplens.config import Settings
from deeplens.ingest.client import ElasticsearchNotConfigured, connect
from deeplens.ingest.setup import SetupError, setup
from deeplens.modules.profiles import PROFILES


def client(settings: Settings) -> Elasticsearch:
    try:
        return connect(settings)
    except ElasticsearchNotConfigured as exc:
        raise click.ClickException(str(exc)) from None


@click.group("es")
def es() -> None:
    """Elasticsearch: index templates, ingest pipelines, inference endpoints, transforms."""


@es.command("setup")
@click.option(
    "--mode",
    type=click.Choice(["auto", "inference", "precomputed"]),
    default="auto",
    show_default=True,
    help="inference: the pipeline calls the module server (Enterprise/trial licence); "
    "precomputed: workers send finished vectors; auto: read GET _license.",
)
@click.option(
    "--modules-url",
    help="Module server URL as Elasticsearch reaches it (inference mode); its /meta gives the embedding dims. [settings]",
)
@click.option(
    "--semantic-dims",
    type=int,
    help="Embedding dims (" + ", ".join(f"{p.name}: {p.dims}" for p in PROFILES.values()) + "). "
    "[what the module server's /meta reports]",
)
@click.option("--keep-thumbnails", is_flag=True, help="Keep the base64 thumbnail in _source (dropped by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def setup_command(mode: str, modules_url: str | None, semantic_dims: int | None, keep_thumbnails: bool, as_json: bool) -> None:
    """Install DeepLens into Elasticsearch as far as the cluster supports it; idempotent."""
    settings = click.get_current_context().find_object(Settings) or Settings()
    es_client = client(settings)
    try:
        report = setup(
            es_client,
            mode=mode,
            modules_url=modules_url or settings.modules_url,
            semantic_dims=semantic_dims,
            keep_thumbnails=keep_thumbnails,
        )
    except SetupError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        es_client.close()
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
        return
    for line in report.notes:
        click.echo(f"note: {line}")
    for line in report.done:
        click.echo(f"ok: {line}")
    for line in report.unsupported:
        click.echo(f"unsupported: {line}")
    pipeline = report.pipeline or "none (index without a pipeline)"
    click.echo(f"Mode {report.mode}; image documents go to deeplens-images with pipeline {pipeline}.")
