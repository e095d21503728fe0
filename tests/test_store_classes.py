"""One small store interface, one class per backend: the same contract on a local folder and on S3
(a real moto server), chosen from the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagelib.errors import NotFound, StorageError
from imagelib.storage import FsspecStore, LocalStore, Store, store_root


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A LocalStore on a temp folder, or an FsspecStore on a fresh moto bucket."""
    if request.param == "local":
        return Store(f"file://{tmp_path}/store")
    return Store(request.getfixturevalue("s3_store"))


def test_the_url_picks_the_class(tmp_path: Path, store: Store) -> None:
    """file:// and plain paths are LocalStore, s3:// is FsspecStore; both are Stores."""
    assert isinstance(store, LocalStore if store.url.startswith("file://") else FsspecStore)
    assert isinstance(Store(str(tmp_path / "plain")), LocalStore)


def test_staged_objects_are_invisible_until_published(tmp_path: Path, store: Store) -> None:
    """A staged prefix is not published; publish makes it whole; a second publish of the same key is a
    no-op that removes the new staging."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 1000)
    staging = store.new_staging()
    digest = store.put_file(source, f"{staging}/source/f.bin")
    assert len(digest) == 64
    store.verify_size(f"{staging}/source/f.bin", 1000)
    with pytest.raises(StorageError) as info:
        store.verify_size(f"{staging}/source/f.bin", 999)
    assert info.value.code == "STORAGE_VERIFY_FAILED"
    assert not store.is_published("versions/v1")
    assert store.publish(staging, "versions/v1") is True
    assert store.is_published("versions/v1")
    again = store.new_staging()
    store.put_file(source, f"{again}/source/f.bin")
    assert store.publish(again, "versions/v1") is False
    assert store.collect_staging() == 0  # the losing staging was removed, nothing abandoned
    with pytest.raises(NotFound):
        store.open_group("versions/v2/image.zarr")


def test_write_bytes_and_abandoned_staging(store: Store) -> None:
    """Small objects are written as given; gc removes abandoned staging prefixes."""
    store.write_bytes("site/index.html", b"<html></html>")
    assert store.fs.cat_file(store.path("site/index.html")) == b"<html></html>"
    staging = store.new_staging()
    store.write_bytes(f"{staging}/part", b"half")
    assert store.collect_staging() == 1


def test_store_root_of_a_version() -> None:
    """The one place that turns a version's storage URL back into its store's root."""
    assert store_root("s3://b/p/versions/abc", "abc") == "s3://b/p"
    with pytest.raises(StorageError):
        store_root("s3://b/p/other/abc", "abc")


def test_verify_size_covers_directory_trees(tmp_path: Path, store: Store) -> None:
    """A staged Zarr directory is checked by the total size of its files, not skipped."""
    tree = tmp_path / "tree.zarr"
    (tree / "0").mkdir(parents=True)
    (tree / ".zgroup").write_bytes(b"{}")
    (tree / "0" / "0.0").write_bytes(b"x" * 100)
    staging = store.new_staging()
    store.put_file(tree, f"{staging}/source/tree.zarr")
    store.verify_size(f"{staging}/source/tree.zarr", 102)
    with pytest.raises(StorageError) as info:
        store.verify_size(f"{staging}/source/tree.zarr", 103)
    assert info.value.code == "STORAGE_VERIFY_FAILED"


def test_put_file_digest_and_bytes(tmp_path: Path, store: Store) -> None:
    """What put_file stores is the source byte for byte, and its digest is the independent sha256 of
    those bytes (a file over one 8 MiB hashing block, and a tree as file_sha256 hashes trees), with
    progress summing to the size."""
    import hashlib
    import os

    from imagelib.hashing import BLOCK, file_sha256

    payload = os.urandom(BLOCK + 12345)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    seen: list[int] = []
    staging = store.new_staging()
    digest = store.put_file(source, f"{staging}/source/big.bin", seen.append)
    assert digest == hashlib.sha256(payload).hexdigest() == file_sha256(source)
    assert sum(seen) == len(payload)
    assert store.fs.cat_file(store.path(f"{staging}/source/big.bin")) == payload
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "x").write_bytes(b"one")
    (tree / "b").write_bytes(payload[:1000])
    expected = hashlib.sha256(b"a/x\0one" + b"b\0" + payload[:1000]).hexdigest()
    assert store.put_file(tree, f"{staging}/source/tree") == expected == file_sha256(tree)
    assert store.fs.cat_file(store.path(f"{staging}/source/tree/a/x")) == b"one"


def test_put_file_reports_each_block_as_stored_and_stops_when_told(tmp_path: Path, store: Store) -> None:
    """Progress comes block by block while the copy runs (not after it), and raising from the callback
    stops the copy there: a failed ingest does not wait for its copy of a large file to finish."""
    import os

    from imagelib.hashing import BLOCK

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * BLOCK + 7))
    key = f"{store.new_staging()}/source/big.bin"
    sizes: list[int] = []

    def stop_after_the_first(count: int) -> None:
        sizes.append(count)
        stored = store.fs.size(store.path(key)) if store.fs.exists(store.path(key)) else 0
        assert stored < source.stat().st_size  # told while copying, not once at the end
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        store.put_file(source, key, stop_after_the_first)
    assert len(sizes) == 1 and 0 < sizes[0] <= BLOCK
