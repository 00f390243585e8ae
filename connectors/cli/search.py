"""`deeplens search`: similar images by image or text, near-duplicates of an image."""

from __future__ import annotations

import click
from rich.table import Table

from deeplens.connectors import storage
from deeplens.connectors.cli.common import backend_option, echo_json, out, query_backend
from deeplens.connectors.queries.grouping import DEFAULT_MAX_DISTANCE
from deeplens.connectors.queries.search import read_query_image, search_image, search_text
from deeplens.modules.images import BadImage


@click.command("search")
@click.option("--image", "image", metavar="PATH_OR_URL", help="Find images like this one.")
@click.option("--text", metavar="TEXT", help="Find images matching this text (clip profile).")
@click.option("--limit", default=10, show_default=True)
@click.option("--location", "locations", multiple=True, help="Only these locations (repeatable).")
@click.option("--near-dup", is_flag=True, help="Near-duplicates of --image by pHash (incl. rotations/mirrors).")
@click.option("--max-distance", default=DEFAULT_MAX_DISTANCE, show_default=True, help="Hamming bits for --near-dup.")
@click.option("--json", "as_json", is_flag=True)
@backend_option
def search_command(image, text, limit, locations, near_dup, max_distance, as_json, backend) -> None:
    """Similarity search by image or text."""
    if bool(image) == bool(text):
        raise click.UsageError("give exactly one of --image or --text")
    if near_dup and not image:
        raise click.UsageError("--near-dup needs --image")
    locations = list(locations) or None
    try:
        data = read_query_image(storage.fsspec_url(image)) if image else None  # a path, or a uri from results
        with query_backend(backend) as (queries, modules):
            if image:
                hits = search_image(queries, modules, data, limit, locations, near_dup, max_distance)
            else:
                hits = search_text(queries, text, limit, locations)
    except (OSError, BadImage) as exc:
        raise click.ClickException(f"cannot read query image {image}: {exc}") from None
    if as_json:
        echo_json({"hits": hits})
        return
    score = "hamming_distance" if near_dup else "distance"
    table = Table(score, "location", "uri", "size", "width x height")
    for hit in hits:
        table.add_row(str(hit[score]), hit["location"], hit["uri"], str(hit["size_bytes"]), f"{hit['width']}x{hit['height']}")
    out.print(table)
