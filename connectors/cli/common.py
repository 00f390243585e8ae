"""What every database command shares: settings, the database connections with errors turned into
clean CLI messages, the backend option, progress bars on stderr, JSON and table output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from weaviate.exceptions import InsufficientPermissionsError, WeaviateQueryError

from deeplens.config import Settings
from deeplens.connectors import registry, storage
from deeplens.connectors.modules_client import FeatureError, ModulesClient
from deeplens.connectors.queries import grouping
from deeplens.connectors.queries.backend import Backend, NotAnswered
from deeplens.connectors.weaviate_client import DatabaseUnavailable, connect
from deeplens.schema.weaviate import NoSemanticVectors, SchemaConflict, apply_schema

console = Console(stderr=True)
# Tables go to stdout; when it is a pipe or file, do not cut them to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)

# Errors whose message already says what went wrong and what to do.
EXPLAINED = (SchemaConflict, NoSemanticVectors, registry.UnknownLocation, storage.StorageError, NotAnswered, FeatureError)


def settings() -> Settings:
    return click.get_current_context().find_object(Settings)


@contextmanager
def weaviate_database(apply: bool = True):
    """A Weaviate client with the DeepLens schema in place."""
    current = settings()
    try:
        client = connect(current)
    except DatabaseUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if apply:
            for change in apply_schema(client, current.modules_url,
                                       replication_factor=current.weaviate_replication_factor):
                click.echo(change, err=True)  # first use: which vector mode was chosen, and why
        yield client
    except EXPLAINED as exc:
        raise click.ClickException(str(exc)) from None
    except WeaviateQueryError as exc:  # Weaviate relays module errors, e.g. text on the offline profile
        raise click.ClickException(f"Weaviate could not answer: {exc.message}") from None
    except InsufficientPermissionsError as exc:  # Weaviate's RBAC: the key is valid, its roles too narrow
        raise click.ClickException(
            f"Weaviate at {current.weaviate_url} refused: {exc.message.strip()}\nGive DeepLens's user a role with "
            "collection and data permissions on DeepLens* (docs/operators.md, Authorization)."
        ) from None
    finally:
        client.close()


@contextmanager
def elasticsearch_client():
    from elasticsearch import ConnectionError as EsConnectionError

    from deeplens.ingest.client import ElasticsearchNotConfigured, connect as connect_elasticsearch

    try:
        es = connect_elasticsearch(settings())
    except ElasticsearchNotConfigured as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield es
    except EsConnectionError as exc:
        raise click.ClickException(
            f"Elasticsearch is not reachable at {settings().es_url}: {exc}. Check DEEPLENS_ES_URL and that the cluster runs."
        ) from None
    except EXPLAINED as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        es.close()


BACKENDS = ["weaviate", "elasticsearch"]


def backend_option(command):
    return click.option(
        "--backend", type=click.Choice(BACKENDS), default="weaviate", show_default=True,
        help="Which database answers (elasticsearch needs DEEPLENS_ES_URL and scans with it set).",
    )(command)


@contextmanager
def query_backend(name: str) -> Iterator[tuple[Backend, ModulesClient]]:
    """The chosen backend, and the module server client that prepares query images for both."""
    with ModulesClient(settings().modules_url) as modules:
        if name == "elasticsearch":
            from deeplens.connectors.queries.elasticsearch import ElasticsearchBackend

            with elasticsearch_client() as es:
                yield ElasticsearchBackend(es, modules), modules
        else:
            from deeplens.connectors.queries.weaviate import WeaviateBackend

            with weaviate_database() as client:
                yield WeaviateBackend(client, modules), modules


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )


def find_duplicates(bar: Progress, queries: Backend, modules: ModulesClient, near: bool,
                    locations: list[str] | None, max_distance: int = grouping.DEFAULT_MAX_DISTANCE,
                    max_semantic_distance: float = grouping.DEFAULT_MAX_SEMANTIC_DISTANCE) -> grouping.NearDuplicates:
    """The groups a command works on: exact copies, or with `near` the near-duplicate search (a
    task on `bar`, which it may take long over)."""
    if not near:
        return grouping.NearDuplicates(grouping.exact_groups(queries, locations))
    task = bar.add_task("near-duplicate search", total=None)
    return grouping.near_duplicates(queries, modules, max_distance, max_semantic_distance, locations,
                                    on_total=lambda total: bar.update(task, total=total),
                                    on_done=lambda count: bar.advance(task, count))


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
