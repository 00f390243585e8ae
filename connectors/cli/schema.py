"""`deeplens schema`: the Weaviate collections DeepLens writes."""

from __future__ import annotations

import click

from deeplens.connectors.cli.common import settings, weaviate_database
from deeplens.schema.weaviate import VECTOR_MODES, SchemaConflict, apply_schema


@click.group("schema")
def schema_group() -> None:
    """The Weaviate collections DeepLens writes."""


@schema_group.command("apply")
@click.option("--hash-only", is_flag=True,
              help="Create the image collection with the pHash vector alone: scans run no embedding model "
                   "(several times faster), for exact and pHash near-duplicates; no similarity search.")
@click.option("--vectors", type=click.Choice(["auto", *VECTOR_MODES]), default="auto", show_default=True,
              help="How a new image collection gets its vectors. modules: Weaviate calls the module server "
                   "(GraphQL nearImage/nearText work for anyone); precomputed: the scan writes them (any Weaviate, "
                   "managed ones included); auto: modules when Weaviate has multi2vec-clip and reaches the module "
                   "server, else precomputed, saying why.")
@click.option("--replication-factor", type=click.IntRange(min=1), default=None,
              help="On a Weaviate cluster: copies of each object, each on another node (2 or more keep reads and "
                   "scans going while a node is down). Env: DEEPLENS_WEAVIATE_REPLICATION_FACTOR [Weaviate's default, 1].")
def schema_apply(hash_only: bool, vectors: str, replication_factor: int | None) -> None:
    """Create or update the collections; idempotent; refuses incompatible existing ones.

    Other commands create the full collection (semantic + phash vectors, --vectors auto) when none
    exists; run `deeplens schema apply` with --hash-only, --vectors or --replication-factor before the
    first scan to choose.
    """
    current = settings()
    with weaviate_database(apply=False) as client:
        try:
            changes = apply_schema(client, current.modules_url, hash_only=True if hash_only else None, vectors=vectors,
                                   replication_factor=replication_factor or current.weaviate_replication_factor)
        except SchemaConflict as exc:
            raise click.ClickException(str(exc)) from None
    click.echo("\n".join(changes) if changes else "Schema is up to date.")
