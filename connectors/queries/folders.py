"""Folder duplicates: pairs of folders, within or across locations, whose images are largely the
same (dupeGuru's duplicate folders, but with near copies too).

Every image belongs to one family: its duplicate group (exact or near, from grouping.py), or only
itself. Two folders share a family when both hold a member of it. The overlap of a pair is the
Jaccard index of their families (shared over all distinct families of the two), so a folder that
merely holds one copy of a big folder's image does not count as its duplicate. What a cleanup
would reclaim from a pair: the shared copies of the side that holds fewer bytes of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations

from deeplens.connectors.queries.backend import Backend
from deeplens.connectors.queries.grouping import Group

DEFAULT_MIN_OVERLAP = 0.8


def folder_of(uri: str) -> str:
    return uri.rsplit("/", 1)[0]


def folder_pairs(backend: Backend, groups: Sequence[Group], min_overlap: float = DEFAULT_MIN_OVERLAP,
                 locations: list[str] | None = None) -> list[dict]:
    """Pairs of folders with at least `min_overlap` overlap, most reclaimable bytes first."""
    family = {m.uuid: number for number, group in enumerate(groups) for m in group.members}
    # folder -> family -> bytes of that family's copies in the folder
    folders: dict[tuple[str, str], dict[object, int]] = defaultdict(lambda: defaultdict(int))
    for uuid, properties in backend.images(locations):
        folder = (properties["location"], folder_of(properties["uri"]))
        folders[folder][family.get(uuid, uuid)] += int(properties["size_bytes"])
    by_family: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for folder, families in folders.items():
        for number in families:
            if isinstance(number, int):
                by_family[number].append(folder)
    shared: dict[tuple, int] = defaultdict(int)
    for members in by_family.values():
        for a, b in combinations(sorted(members), 2):
            shared[(a, b)] += 1
    pairs = []
    for (a, b), count in shared.items():
        union = len(folders[a]) + len(folders[b]) - count
        overlap = count / union
        if overlap < min_overlap:
            continue
        common = set(folders[a]) & set(folders[b])
        pairs.append({
            "a": {"location": a[0], "folder": a[1], "images": len(folders[a])},
            "b": {"location": b[0], "folder": b[1], "images": len(folders[b])},
            "overlap": round(overlap, 4),
            "shared": count,
            "unique_a": len(folders[a]) - count,
            "unique_b": len(folders[b]) - count,
            "reclaimable_bytes": min(sum(folders[a][f] for f in common), sum(folders[b][f] for f in common)),
        })
    return sorted(pairs, key=lambda p: (-p["reclaimable_bytes"], p["a"]["folder"], p["b"]["folder"]))
