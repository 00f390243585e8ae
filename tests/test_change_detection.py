"""Change detection of a rescan, through the CLI on the real Weaviate and module server, on local disk
and on S3 (SeaweedFS): a location with every kind of change gives the expected new, changed,
unchanged, deleted and skipped counts, and afterwards the index holds exactly the storage's images
and remembers exactly its non-images. Memory against the location's size: bench/listing_memory.py."""

from __future__ import annotations

import fsspec
import pytest

from deeplens.samples import jpeg_bytes, synthetic_image
from deeplens.schema.weaviate import SKIPPED_COLLECTION
from tests.cli import run, run_json, weaviate_client
from tests.scanning import index_of, indexed, remote_location

pytestmark = [pytest.mark.weaviate, pytest.mark.storage]

COUNTS = ("listed", "new", "changed", "unchanged", "deleted", "skipped_not_images", "errors")


def image(seed: int) -> bytes:
    return jpeg_bytes(synthetic_image(seed, (64, 48)))


def skipped(endpoint, location: str) -> set[str]:
    with weaviate_client(endpoint) as client:
        return {o.properties["path"] for o in client.collections.use(SKIPPED_COLLECTION).iterator(
            return_properties=["location", "path"]) if o.properties["location"] == location}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_rescan_of_a_location_with_every_kind_of_change(env, weaviate, tmp_path, request, where):
    name = f"mixed-{where}"
    if where == "local":
        fs, root = fsspec.filesystem("file", auto_mkdir=True), str(tmp_path / name)
    else:
        server = request.getfixturevalue("s3_server")
        fs = fsspec.filesystem("s3", **server.storage_options, skip_instance_cache=True)
        root = server.child(name).removeprefix("s3://")
    images = {"keep.jpg": image(1), "change.jpg": image(2), "remove.jpg": image(3), "sub/deep.jpg": image(4),
              "ü dir/ü.jpg": image(5), "photo.bin": image(6)}  # a JPEG without an image extension
    others = {"notes.dat": b"notes " * 20, "becomes.dat": b"text, then a JPEG", "removed.dat": b"deleted later"}
    fs.pipe({f"{root}/{path}": data for path, data in (images | others | {"broken.jpg": b""}).items()})
    if where == "local":
        run(env, "storage", "add", name, root)
    else:
        env = remote_location(env, server, name)

    [first] = run_json(env, "scan", name)
    assert tuple(first[k] for k in COUNTS) == (10, 6, 0, 0, 0, 3, 1)
    assert indexed(weaviate, name) == index_of(images)
    assert skipped(weaviate, name) == set(others)

    images |= {"change.jpg": image(7), "added.jpg": image(8), "becomes.dat": image(9)}
    del images["remove.jpg"], images["photo.bin"]
    fs.pipe({f"{root}/{path}": images[path] for path in ("change.jpg", "added.jpg", "becomes.dat")})
    fs.pipe(f"{root}/photo.bin", b"no longer a picture")
    fs.rm([f"{root}/remove.jpg", f"{root}/removed.dat"])

    [second] = run_json(env, "scan", name)
    # new: added.jpg, becomes.dat; changed: change.jpg; unchanged: keep, deep, ü; deleted: remove.jpg,
    # photo.bin (not an image now); skipped: notes.dat (unchanged, not read), photo.bin; error: broken.jpg.
    assert tuple(second[k] for k in COUNTS) == (9, 2, 1, 3, 2, 2, 1)
    assert indexed(weaviate, name) == index_of(images)
    assert skipped(weaviate, name) == {"notes.dat", "photo.bin"}

    [third] = run_json(env, "scan", name)
    assert tuple(third[k] for k in COUNTS) == (9, 0, 0, 6, 0, 2, 1)
    assert indexed(weaviate, name) == index_of(images)
    assert skipped(weaviate, name) == {"notes.dat", "photo.bin"}
