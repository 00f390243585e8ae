"""`deeplens duplicates`: exact and near-duplicate groups and the bytes they waste."""

from __future__ import annotations

import csv
import functools
import sys
from contextlib import nullcontext
from dataclasses import asdict

import click

from deeplens.connectors import publish as publishing
from deeplens.connectors.cli.common import (
    backend_option, console, echo_json, elasticsearch_client, find_duplicates, human_size, progress, query_backend,
)
from deeplens.connectors.cli.folders import folders_option
from deeplens.connectors.queries import grouping

CSV_COLUMNS = ["group", "kind", "kept", "tier", "uri", "location", "size_bytes", "distance", "cosine", "inliers",
               "group_wasted_bytes"]


def publish_option(command):
    """--publish, refused where it would publish less than every group: with --folders (which reports
    folder pairs instead) and --location (a publish replaces all that Kibana shows)."""

    @functools.wraps(command)
    def checked(*args, publish: bool, **options):
        if publish and (options["folders"] or options["locations"]):
            raise click.UsageError("--publish writes every group for Kibana, replacing what it showed: "
                                   "leave out --folders and --location")
        return command(*args, publish=publish, **options)

    return click.option(
        "--publish", is_flag=True,
        help="Also write the groups to Elasticsearch (DEEPLENS_ES_URL) for Kibana: one document per copy a "
             "cleanup would remove, in deeplens-duplicate-copies, replacing the previous publish.",
    )(checked)


@click.command("duplicates")
@publish_option
@folders_option
@click.option("--exact", "mode", flag_value="exact", default=True, help="Byte-identical copies (default).")
@click.option("--near", "mode", flag_value="near",
              help="Also near copies (pHash, rotations, mirrors) and derived ones (crops, borders, watermarks, "
                   "confirmed by geometric verification); includes exact copies.")
@click.option("--max-distance", default=grouping.DEFAULT_MAX_DISTANCE, show_default=True,
              help="--near: most pHash bits (of 64) that may differ.")
@click.option("--max-semantic-distance", default=grouping.DEFAULT_MAX_SEMANTIC_DISTANCE, show_default=True,
              help="--near: most cosine distance of the semantic embeddings for a candidate that geometric "
                   "verification then confirms or rejects; 0 turns derived copies off.")
@click.option("--include-similar", is_flag=True,
              help="--near: also list look-alike pairs that verification rejected (for review; never duplicates).")
@click.option("--location", "locations", multiple=True, help="Only these locations (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True, help="One row per member, with its group's number.")
@backend_option
def duplicates_command(mode, max_distance, max_semantic_distance, include_similar, locations, as_json, as_csv,
                       backend, publish) -> None:
    """Duplicate groups and the bytes they waste (group total minus the kept copy).

    Every member carries its tier (exact, near, derived) and the evidence of its match with the
    kept copy: pHash bits, cosine distance, geometric verification. Candidates that could not be
    verified are listed as unverified, never grouped.
    """
    locations = list(locations) or None
    try:
        with elasticsearch_client() if publish else nullcontext() as es:
            if es is not None:
                publishing.check_ready(es)  # before the grouping, which may take long
            with query_backend(backend) as (queries, modules):
                if mode == "near" and max_semantic_distance > 0 and queries.hash_only():
                    console.print("Hash-only index: near duplicates by pHash (rotations and mirrors included) "
                                  "only; crops, borders and watermarks need the semantic vectors.")
                with progress() as bar:
                    found = find_duplicates(bar, queries, modules, mode == "near", locations, max_distance,
                                            max_semantic_distance)
            published = publishing.publish(es, found.groups) if es is not None else None
    except publishing.PublishError as exc:
        raise click.ClickException(str(exc)) from None
    if published:
        console.print(f"Published {published.copies} copies ({human_size(published.wasted_bytes)}) to "
                      f"{published.index}, now behind the alias {published.alias}"
                      + (f"; deleted {', '.join(published.replaced)}" if published.replaced else "") + ".")
    groups = found.groups
    total = sum(g.wasted_bytes for g in groups)
    if as_json:
        echo_json({"groups": [g.as_json() for g in groups], "total_wasted_bytes": total,
                   **({"unverified": [p.as_json() for p in found.unverified]} if mode == "near" else {}),
                   **({"similar": [p.as_json() for p in found.similar]} if include_similar else {}),
                   **({"published": asdict(published)} if published else {})})
        return
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(CSV_COLUMNS)
        for number, group in enumerate(groups, 1):
            for index, m in enumerate(group.members):
                evidence = m.evidence or grouping.Evidence(0)
                inliers = (evidence.verification or {}).get("inliers")
                writer.writerow([number, group.kind, index == 0, m.tier, m.uri, m.location, m.size_bytes, m.distance,
                                 "" if evidence.cosine is None else evidence.cosine, "" if inliers is None else inliers,
                                 group.wasted_bytes])
        return
    for number, group in enumerate(groups, 1):
        click.echo(f"group {number} ({group.kind}, {len(group.members)} copies, wastes {human_size(group.wasted_bytes)}):")
        for m in group.members:
            click.echo(f"  {m.tier:<7} d={m.distance:<2} {human_size(m.size_bytes):>9}  {m.uri}{_why(m.evidence)}")
    click.echo(f"{len(groups)} groups, {human_size(total)} wasted in total.")
    for title, pairs in (("not verified (never grouped)", found.unverified),
                         ("look-alikes, not copies", found.similar if include_similar else [])):
        if pairs:
            click.echo(f"{len(pairs)} pairs {title}:")
            for pair in pairs:
                click.echo(f"  {pair.a.uri}  ~  {pair.b.uri}{_why(pair.evidence)}"
                           + (f": {pair.reason}" if pair.reason else ""))


def _why(evidence: grouping.Evidence | None) -> str:
    """The evidence in a few words: cosine and verification, where the pair was not a hash match."""
    if evidence is None or evidence.cosine is None:
        return ""
    check = evidence.verification
    verdict = (f", {check['inliers']} inliers, rotation {check['rotation_deg']:g} deg, scale {check['scale']:g}"
               if check and check.get("rotation_deg") is not None else "")
    return f"  (cosine {evidence.cosine:g}{verdict})"
