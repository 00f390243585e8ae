"""Images, bytes and exact-duplicate bytes per storage location, from any backend."""

from __future__ import annotations

from deeplens.connectors.queries.backend import Backend
from deeplens.connectors.queries.grouping import exact_groups


def location_stats(backend: Backend) -> list[dict]:
    rows = {
        location: {"location": location, "images": images, "bytes": size, "duplicate_bytes": 0}
        for location, (images, size) in backend.location_totals().items()
    }
    for group in exact_groups(backend):
        for member in group.members[1:]:  # what would be removed, charged to its location
            rows[member.location]["duplicate_bytes"] += member.size_bytes
    return sorted(rows.values(), key=lambda row: row["location"])
