"""Images, bytes and reclaimable bytes per storage location, from any backend.

Reclaimable bytes are what a cleanup with the default keep rules would free: every copy of a group
but the kept one, charged to the location of the copy. `duplicate_bytes` counts exact copies;
with near groups asked for, `near_duplicate_bytes` counts exact and near copies (derived ones,
crops and borders, are different pictures a person decides about: `deeplens plan --tiers`).
"""

from __future__ import annotations

from deeplens.connectors.modules_client import ModulesClient
from deeplens.connectors.queries.backend import Backend
from deeplens.connectors.queries.grouping import Group, exact_groups, near_groups

RECLAIMED_TIERS = ("exact", "near")  # as `deeplens plan` by default


def location_stats(backend: Backend, modules: ModulesClient | None = None, near: bool = False, **near_options) -> list[dict]:
    """With `near`, also the bytes of near copies (near_options: as grouping.near_groups)."""
    rows = {
        location: {"location": location, "images": images, "bytes": size, "duplicate_bytes": 0}
        | ({"near_duplicate_bytes": 0} if near else {})
        for location, (images, size) in backend.location_totals().items()
    }
    _charge(rows, "duplicate_bytes", exact_groups(backend))
    if near:
        _charge(rows, "near_duplicate_bytes", near_groups(backend, modules, **near_options))
    return sorted(rows.values(), key=lambda row: row["location"])


def _charge(rows: dict, column: str, groups: list[Group]) -> None:
    for group in groups:
        for member in group.members[1:]:  # what would be removed, charged to its location
            if member.tier in RECLAIMED_TIERS:
                rows[member.location][column] += member.size_bytes
