"""The grouping core on its own: rotated/mirrored copies by hash bands, star groups, keep order and
wasted bytes. The backends feed it in tests/test_scan_elasticsearch.py and tests/test_cli_e2e.py."""

from __future__ import annotations

import pytest
from PIL import Image

from deeplens.connectors.queries.grouping import (
    Evidence,
    Hashes,
    Match,
    Member,
    missed_members,
    verification_order,
    star_groups,
    turned_copies,
)
from deeplens.modules.phash import bits_to_hex, dihedral_hashes, phash_bits
from deeplens.samples import sample_photos, synthetic_image

# PIL's names for the eight symmetries of the square.
TURNS = {
    "identity": None,
    "rot90": Image.Transpose.ROTATE_90,
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
    "mirror": Image.Transpose.FLIP_LEFT_RIGHT,
    "flip": Image.Transpose.FLIP_TOP_BOTTOM,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}


def hashes_of(image: Image.Image) -> Hashes:
    variants = dihedral_hashes(image)
    return Hashes.of({"phash": bits_to_hex(phash_bits(image)), "phash_dihedral": list(variants.values())})


def near(bits: int) -> Match:
    return Match("near", Evidence(bits))


def derived(bits: int) -> Match:
    return Match("derived", Evidence(bits, cosine=0.05, verification={"verified": True, "inliers": 40}))


def member(uuid: str, size: int, pixels: int = 100, sha: str | None = None, uri: str | None = None) -> Member:
    return Member(uuid=uuid, location="loc", uri=uri or f"file:///{uuid}.jpg", size_bytes=size, pixels=pixels,
                  content_sha256=sha or uuid)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_every_rotation_and_mirror_is_found_as_a_turned_copy_of_its_original(name):
    original = sample_photos()[name].convert("RGB")
    hashes = {turn: hashes_of(original if op is None else original.transpose(op)) for turn, op in TURNS.items()}
    found = turned_copies(hashes, max_distance=8)
    for turn in TURNS:
        if turn != "identity":
            # Found from either side: a variant of the copy hits the original, or one of the original hits the copy.
            assert "identity" in found.get(turn, {}) or turn in found.get("identity", {}), f"{turn} copy of {name}"


def test_hashes_ignore_the_position_of_the_image_as_it_is():
    image = synthetic_image(3)
    variants = dihedral_hashes(image)
    shuffled = list(reversed(variants.values()))
    a = Hashes.of({"phash": variants["identity"], "phash_dihedral": list(variants.values())})
    b = Hashes.of({"phash": variants["identity"], "phash_dihedral": shuffled})
    assert a.phash == b.phash == variants["identity"]
    assert set(a.turned) == set(b.turned) and variants["identity"] not in a.turned


def test_unrelated_images_are_not_turned_copies():
    hashes = {str(seed): hashes_of(synthetic_image(seed)) for seed in range(12)}
    assert turned_copies(hashes, max_distance=8) == {}


def test_star_groups_never_chain_unrelated_images():
    # a-b-c-d-e: each only like its neighbours; a and e (and a and d) are nothing alike.
    images = {u: member(u, 1000) for u in "abcde"}
    graph = {"a": {"b": near(5)}, "b": {"c": near(5)}, "c": {"d": near(5)}, "d": {"e": near(5)}}
    groups = star_groups(images, {k: dict(v) for k, v in graph.items()})
    edges = {frozenset((x, y)) for x, ys in graph.items() for y in ys}
    for group in groups:
        uuids = [m.uuid for m in group.members]
        # Every group is a star: one member (the centre) is a near-duplicate of all the others.
        assert any(all(frozenset((centre, other)) in edges for other in uuids if other != centre) for centre in uuids)
    together = {frozenset((x.uuid, y.uuid)) for g in groups for x in g.members for y in g.members if x is not y}
    assert frozenset("ae") not in together and frozenset("ad") not in together
    grouped = [m.uuid for g in groups for m in g.members]
    assert len(grouped) == len(set(grouped))  # nobody in two groups


def test_the_most_connected_image_is_the_centre_so_a_family_stays_whole():
    # A letterboxed copy (x) matches only the original (o); the other copies match each other too.
    images = {u: member(u, 1000) for u in ["o", "p", "q", "x"]}
    graph = {"o": {"p": near(2), "q": near(3), "x": near(6)}, "p": {"q": near(2)}}
    [group] = star_groups(images, graph)
    assert {m.uuid for m in group.members} == {"o", "p", "q", "x"}
    assert {m.uuid: m.distance for m in group.members} == {"o": 0, "p": 2, "q": 3, "x": 6}


def test_keep_order_and_wasted_bytes():
    images = {
        "small": member("small", 900, pixels=50),
        "big": member("big", 1200, pixels=200),
        "big-longer-name": member("big-longer-name", 1200, pixels=200),
        "big-smaller-file": member("big-smaller-file", 800, pixels=200),
        "lone1": member("lone1", 10_000),
        "lone2": member("lone2", 10_000),
    }
    graph = {"big": {"small": near(1), "big-longer-name": near(0), "big-smaller-file": near(1)}, "lone1": {"lone2": near(4)}}
    first, second = star_groups(images, graph)
    # Groups by wasted bytes, largest first: the pair of big files before the family of small ones.
    assert [m.uuid for m in first.members] == ["lone1", "lone2"] and first.wasted_bytes == 10_000
    # Within a group the kept copy first: most pixels, then largest file, then shortest URI.
    assert [m.uuid for m in second.members] == ["big", "big-longer-name", "big-smaller-file", "small"]
    assert second.wasted_bytes == 1200 + 800 + 900  # the total minus the kept copy


def test_byte_identical_members_make_an_exact_group():
    images = {"a": member("a", 500, sha="s"), "b": member("b", 500, sha="s"), "c": member("c", 400, sha="t")}
    groups = star_groups(images, {"a": {"b": near(0)}})
    assert [g.kind for g in groups] == ["exact"] and [m.tier for m in groups[0].members] == ["kept", "exact"]
    [group] = star_groups(images, {"a": {"b": near(0), "c": near(3)}})
    assert group.kind == "near" and [m.tier for m in group.members] == ["kept", "exact", "near"]


def test_a_derived_copy_is_never_kept_over_its_source():
    # The watermarked copy has more pixels and bytes, and matches as many images as the original,
    # but only by verification: the original (or its recompressed copy) is kept.
    images = {"original": member("original", 1000, pixels=100), "recompressed": member("recompressed", 600, pixels=100),
              "watermarked": member("watermarked", 5000, pixels=400)}
    graph = {"original": {"recompressed": near(2), "watermarked": derived(20)}, "recompressed": {"watermarked": derived(21)}}
    [group] = star_groups(images, graph)
    assert (group.members[0].uuid, group.members[0].tier) == ("original", "kept")
    tiers = {m.uuid: m.tier for m in group.members[1:]}
    assert tiers == {"recompressed": "near", "watermarked": "derived"} and group.kind == "derived"
    assert next(m for m in group.members if m.uuid == "watermarked").evidence.verification["inliers"] == 40


def test_verification_order_keeps_linked_pairs_together():
    """Two chains of candidate pairs whose ids interleave: ordered for the module server's feature
    cache, each chain's pairs come out in one run, and no pair is lost or added."""
    chain = [(f"a{i}", f"a{i + 1}") for i in range(6)] + [(f"b{i}", f"b{i + 1}") for i in range(6)]
    ordered = verification_order(sorted(chain, key=lambda pair: pair[0][1:]))  # a0, b0, a1, b1, ...
    assert sorted(ordered) == sorted(chain)
    families = [pair[0][0] for pair in ordered]
    assert families.count("a") == 6 and "".join(families) in ("a" * 6 + "b" * 6, "b" * 6 + "a" * 6)


def test_an_image_that_matched_only_a_member_is_checked_against_the_kept_copy_once():
    # o is kept with p, q and r; m (a crop, say) was verified only against p, so the star leaves it
    # out. It is asked about o alone: never about p's other matches, never about a lone image.
    images = {u: member(u, 1000) for u in ["o", "p", "q", "r", "m", "lone"]}
    graph = {"o": {"p": near(2), "q": near(3), "r": near(4)}, "p": {"m": derived(20)}}
    [group] = star_groups(images, graph)
    assert group.members[0].uuid == "o" and "m" not in {x.uuid for x in group.members}
    assert missed_members([group], graph) == [("m", "o")]
    graph["m"]["o"] = graph["o"]["m"] = derived(18)  # verified: the next star takes it in
    [group] = star_groups(images, graph)
    assert {x.uuid for x in group.members} == {"o", "p", "q", "r", "m"} and missed_members([group], graph) == []


def test_a_member_of_a_second_group_that_matched_the_first_is_checked_against_its_kept_copy():
    # Two groups of one picture (a split group): o kept with p, q and r; s kept with t and u, and t
    # was verified against p. t is asked about o, and p about s (from either side); q, r and u,
    # which matched nothing of the other group, are not asked.
    images = {u: member(u, 1000) for u in ["o", "p", "q", "r", "s", "t", "u"]}
    graph = {"o": {"p": near(2), "q": near(3), "r": near(4)}, "s": {"t": near(5), "u": near(6)}, "p": {"t": derived(20)}}
    groups = star_groups(images, graph)
    assert sorted(group.members[0].uuid for group in groups) == ["o", "s"]
    assert missed_members(groups, graph) == [("o", "t"), ("p", "s")]
    graph["t"]["o"] = graph["o"]["t"] = derived(18)  # verified: the larger star takes it over
    groups = star_groups(images, graph)
    assert {x.uuid for x in groups[0].members} == {"o", "p", "q", "r", "t"}
