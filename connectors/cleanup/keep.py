"""Keep rules: which copy of a duplicate group survives a cleanup.

An ordered list of rules; the first rule that tells two copies apart decides, and the URI breaks
the last ties so the choice is stable. The default is chosen so that the source survives:

  reference  a copy in a reference location (`storage add --reference`), whose files are never touched
  original   a copy that others are derived from over a derived one (tier "derived": a crop, border,
             watermark or small rotation of the kept copy; or pixels turned against the copy's EXIF
             orientation, see plan.turned_against_exif)
  pixels     more pixels
  lossless   a lossless format (PNG, TIFF, BMP, GIF) over a lossy one (JPEG, ...)
  older      the older modification time: a copy is made after its source
  exif       more EXIF fields: exports and messengers strip them
  larger     the larger file: at equal pixels and format, the one compressed less
  shorter    the shorter path: `a.jpg` over `backup/old/a copy (2).jpg`

A fact that is not known for a copy (grouping knows the indexed modification time but no EXIF;
the plan reads both from the storage) never decides against it: unknown facts rank as equal. Grouping calls
`member_key` with its members alone; the plan adds the facts it read (`Candidate.facts`).

This module imports only storage/sniffing.py (a leaf) of DeepLens: queries/grouping.py calls it
for the order of members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deeplens.connectors.storage.sniffing import extension

DEFAULT_RULES = ("reference", "original", "pixels", "lossless", "older", "exif", "larger", "shorter")
LOSSLESS = frozenset({"png", "tif", "tiff", "bmp", "gif"})
LOSSY = frozenset({"jpg", "jpeg", "heic", "heif", "avif"})  # webp is either: unknown


@dataclass(frozen=True)
class Candidate:
    """What the rules compare of one copy. Built from a grouping Member (`of`) plus facts."""

    uri: str
    pixels: int = 0
    size_bytes: int = 0
    tier: str = ""
    has_border: bool = False  # a uniform margin around the picture (connectors/extract.py)
    format: str | None = None  # "jpeg", "png", ... or the file's extension
    reference: bool = False
    preferred: int | None = None  # index in --prefer-location; lower is preferred
    modified_at: datetime | None = None
    exif_fields: int | None = None
    turned: bool = False  # pixels turned against the EXIF orientation (known to the plan only)

    @classmethod
    def of(cls, member: Any, **facts: Any) -> Candidate:
        """From anything shaped like a grouping Member; `facts` fill or override the rest."""
        values = {
            "uri": member.uri,
            "pixels": member.pixels,
            "size_bytes": member.size_bytes,
            "tier": getattr(member, "tier", ""),
            "has_border": getattr(member, "has_border", False),
            "modified_at": getattr(member, "modified_at", None),
            "format": extension(member.uri) or None,
        }
        return cls(**(values | facts))


def _unknown_last(value) -> tuple:
    # (0, v) sorts before (1, None): a known value is compared, an unknown one decides nothing
    # against other unknown ones.
    return (1, 0) if value is None else (0, value)


def _lossless(candidate: Candidate) -> int:
    fmt = (candidate.format or "").lower()
    return 0 if fmt in LOSSLESS else 1 if fmt in LOSSY else 0


# name -> (what it prefers, sort key: smaller is kept)
RULES: dict[str, tuple[str, Callable[[Candidate], Any]]] = {
    "reference": ("a copy in a reference location", lambda c: 0 if c.reference else 1),
    "original": ("not a derived copy (crop, border, watermark, small rotation, turned against its EXIF orientation)",
                 lambda c: 1 if c.tier == "derived" or c.has_border or c.turned else 0),
    "pixels": ("more pixels", lambda c: -c.pixels),
    "lossless": ("a lossless format over a lossy one", _lossless),
    "older": ("the older modification time",
              lambda c: _unknown_last(c.modified_at.timestamp() if c.modified_at else None)),
    "exif": ("more EXIF fields", lambda c: -(c.exif_fields or 0)),
    "larger": ("the larger file", lambda c: -c.size_bytes),
    "shorter": ("the shorter path", lambda c: len(c.uri)),
}


class BadRules(ValueError):
    """--keep names a rule that does not exist; the message lists the rules."""


def parse_rules(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """`--keep pixels,older` -> ("pixels", "older"). None or empty: the default rules."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text or ()) if n.strip()]
    if not names:
        return DEFAULT_RULES
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise BadRules(f"unknown keep rule {', '.join(map(repr, unknown))}; the rules are: "
                       + "; ".join(f"{name} ({what})" for name, (what, _) in RULES.items()))
    if len(set(names)) != len(names):
        raise BadRules(f"--keep names a rule twice: {','.join(names)}")
    return tuple(names)


def order_key(candidate: Candidate, rules: Sequence[str] = DEFAULT_RULES) -> tuple:
    """Sort key: the copy to keep sorts first. A preferred location (--prefer-location) comes right
    after reference locations, whatever the other rules say."""
    keys = [_unknown_last(candidate.preferred) if name == "preferred" else RULES[name][1](candidate)
            for name in _with_preference(rules)]
    return (*keys, candidate.uri)


def _with_preference(rules: Sequence[str]) -> list[str]:
    rules = list(rules)
    at = 1 if rules[:1] == ["reference"] else 0
    return [*rules[:at], "preferred", *rules[at:]]


def deciding_rule(kept: Candidate, other: Candidate, rules: Sequence[str] = DEFAULT_RULES) -> str:
    """The name of the first rule that ranks `kept` before `other` ("uri" when only the URI did)."""
    names = _with_preference(rules)
    for name, a, b in zip(names, order_key(kept, rules), order_key(other, rules)):
        if a != b:
            return name
    return "uri"


# Rules that judge what a file holds, not where it lies or how it was matched.
CONTENT_RULES = frozenset({"pixels", "lossless", "older", "exif", "larger"})


def content_key(candidate: Candidate, rules: Sequence[str] = DEFAULT_RULES) -> tuple:
    """The rules' order over the content rules alone: which of two related copies looks like the source."""
    return tuple(RULES[name][1](candidate) for name in rules if name in CONTENT_RULES)


def member_key(member: Any) -> tuple:
    """Grouping's keep order (queries/grouping.py keep_order): the default rules over what grouping
    knows of a member (no location registry, modification time or EXIF there)."""
    return order_key(Candidate.of(member))
