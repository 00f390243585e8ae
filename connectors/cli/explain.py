"""`deeplens explain A B`: why two indexed images do or do not match."""

from __future__ import annotations

import click

from deeplens.connectors.cli.common import backend_option, echo_json, query_backend
from deeplens.connectors.queries import grouping


@click.command("explain")
@click.argument("uri_a")
@click.argument("uri_b")
@click.option("--max-distance", default=grouping.DEFAULT_MAX_DISTANCE, show_default=True,
              help="Most pHash bits (of 64) that may differ, as for `duplicates --near`.")
@click.option("--max-semantic-distance", default=grouping.DEFAULT_MAX_SEMANTIC_DISTANCE, show_default=True,
              help="Most cosine distance for a derived-copy candidate, as for `duplicates --near`.")
@click.option("--json", "as_json", is_flag=True)
@backend_option
def explain_command(uri_a, uri_b, max_distance, max_semantic_distance, as_json, backend) -> None:
    """Why two indexed images (URIs as `duplicates` prints them) do or do not match: the tier
    (exact, near, derived, similar, unverified, different) and the evidence for it."""
    with query_backend(backend) as (queries, modules):
        explanation = grouping.explain(queries, modules, uri_a, uri_b, max_distance, max_semantic_distance)
    if as_json:
        echo_json({"a": uri_a, "b": uri_b, **explanation.as_json()})
        return
    click.echo(f"{explanation.tier}: {uri_a}  ~  {uri_b}")
    for reason in explanation.reasons:
        click.echo(f"  - {reason}")
