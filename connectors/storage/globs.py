"""Glob patterns on relative paths, for a location's include and exclude filters.

``*`` and ``?`` stay within one path segment, ``**`` spans any number of segments (``**/`` also
matches none), ``[abc]`` and ``[!abc]`` as in fnmatch; a pattern without ``/`` matches the file
name at any depth (``*.png``, ``.*``).
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A glob as a regex over the relative path; the flag says: match the file name only."""
    pattern = pattern.strip()
    name_only = "/" not in pattern
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1: i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1: end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL), name_only


def glob_match(compiled: tuple[re.Pattern[str], bool], rel: str) -> bool:
    regex, name_only = compiled
    return regex.match(rel.rsplit("/", 1)[-1] if name_only else rel) is not None
