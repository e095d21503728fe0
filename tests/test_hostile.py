"""Untrusted input: every malformed file gets a coded error, exit 1, and nothing is published."""

from __future__ import annotations

import json
import resource
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio

from imagelib.catalog import Catalog
from imagelib.errors import ValidationFailed
from imagelib.ingestion import ingest
from imagelib.validation import validate
from tests.conftest import DATA, copy_sample


def minimal_tiff(path: Path, width: int, height: int, strip_offset: int = 8, strip_bytes: int = 1) -> Path:
    """A little-endian TIFF whose header declares ``width × height`` 8-bit pixels in one strip."""
    tags = [  # (tag, type LONG=4 / SHORT=3, value)
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, strip_offset),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, strip_bytes),
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        ifd += struct.pack("<HHII", tag, kind, 1, value)
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 16) + b"\x00" * 8 + ifd)
    return path


def make_zero_byte(tmp: Path) -> Path:
    (tmp / "empty.tif").write_bytes(b"")
    return tmp / "empty.tif"


def truncated_copy(name: str, tmp: Path, divisor: int) -> Path:
    """A sample cut to 1/divisor of its size, as an interrupted download leaves it."""
    path = copy_sample(name, tmp)
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // divisor)
    return path


def make_truncated_tiff(tmp: Path) -> Path:
    return truncated_copy("RGB.byte.tif", tmp, 2)


def make_wrong_magic(tmp: Path) -> Path:
    path = tmp / "noise.tif"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def make_renamed_text(tmp: Path) -> Path:
    path = tmp / "notes.h5"
    path.write_text("this is a text file with an HDF5 suffix\n" * 10)
    return path


def make_pixel_bomb_tiff(tmp: Path) -> Path:
    return minimal_tiff(tmp / "bomb.tif", 200_000, 200_000)


def make_pixel_bomb_hdf5(tmp: Path) -> Path:
    path = tmp / "bomb.h5"
    with h5py.File(path, "w") as fh:  # chunked and never written: a tiny file declaring 10^12 pixels
        fh.create_dataset("image", shape=(1_000_000, 1_000_000), dtype="uint16", chunks=(256, 256))
    return path


def make_hdf5_external_link(tmp: Path) -> Path:
    with h5py.File(tmp / "other.h5", "w") as fh:
        fh["secret"] = np.ones((4, 4))
    path = tmp / "link.h5"
    with h5py.File(path, "w") as fh:
        fh["image"] = np.zeros((8, 8), dtype="uint8")
        fh["elsewhere"] = h5py.ExternalLink(str(tmp / "other.h5"), "/secret")
    return path


def make_hdf5_external_storage(tmp: Path) -> Path:
    (tmp / "raw.bin").write_bytes(b"\x00" * 64)
    path = tmp / "external.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("image", shape=(8, 8), dtype="uint8", external=[(str(tmp / "raw.bin"), 0, 64)])
    return path


def make_hdf5_virtual(tmp: Path) -> Path:
    with h5py.File(tmp / "source.h5", "w") as fh:
        fh["data"] = np.arange(64, dtype="float32").reshape(8, 8)
    layout = h5py.VirtualLayout(shape=(8, 8), dtype="float32")
    layout[:] = h5py.VirtualSource(str(tmp / "source.h5"), "data", shape=(8, 8))
    path = tmp / "virtual.h5"
    with h5py.File(path, "w") as fh:
        fh.create_virtual_dataset("image", layout)
    return path


def make_truncated_hdf5(tmp: Path) -> Path:
    return truncated_copy("two-subs.h5", tmp, 3)


def make_corrupt_ifd(tmp: Path) -> Path:
    path = tmp / "badifd.tif"  # the IFD claims 65535 entries of garbage inside a 72-byte file
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + b"\xff" * 64)
    return path


def make_netcdf3(tmp: Path) -> Path:
    path = tmp / "classic.nc"
    path.write_bytes(b"CDF\x01" + b"\x00" * 60)
    return path


def make_corrupt_zarr(tmp: Path) -> Path:
    path = tmp / "broken.zarr"
    path.mkdir()
    (path / ".zarray").write_text("{not json")
    return path


def make_corrupt_strip(tmp: Path) -> Path:
    """Valid header, deflate-compressed strips overwritten with garbage."""
    import tifffile

    path = tmp / "garbage.tif"
    tifffile.imwrite(path, np.arange(256 * 256, dtype="uint16").reshape(256, 256), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * count)
    return path


def make_zarr_symlink_outside(tmp: Path) -> Path:
    """A Zarr store whose chunk file is a symlink to a file outside the store."""
    import zarr

    secret = tmp / "secret.bin"
    secret.write_bytes(b"private bytes" * 10)
    path = tmp / "linked.zarr"
    zarr.save_array(str(path), np.zeros((4, 4), np.uint8), zarr_format=2)
    chunk = path / "0.0"
    chunk.unlink(missing_ok=True)
    chunk.symlink_to(secret)
    return path


def make_ngff_path_escape(tmp: Path) -> Path:
    """OME-Zarr metadata naming a dataset path outside the store."""
    import zarr

    zarr.save_array(str(tmp / "outside.zarr"), np.full((4, 4), 7, np.uint8), zarr_format=2)
    group = zarr.open_group(str(tmp / "inner.zarr"), mode="w", zarr_format=2)
    group.attrs["multiscales"] = [
        {"version": "0.4", "axes": [{"name": "y"}, {"name": "x"}], "datasets": [{"path": "../outside.zarr"}]}
    ]
    return tmp / "inner.zarr"


def make_pixel_bomb_zarr(tmp: Path) -> Path:
    import zarr

    path = tmp / "bomb.zarr"  # metadata only: 10^14 declared pixels, no chunk written
    zarr.create_array(
        str(path), shape=(10_000_000, 10_000_000), chunks=(1024, 1024), dtype="uint8", zarr_format=2
    )
    return path


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "zarr-symlink-outside": (make_zarr_symlink_outside, "EXTERNAL_REFERENCE"),
    "ngff-path-escape": (make_ngff_path_escape, "EXTERNAL_REFERENCE"),
    "pixel-bomb-zarr": (make_pixel_bomb_zarr, "DIMENSIONS_TOO_LARGE"),
    "zero-byte": (make_zero_byte, "FILE_EMPTY"),
    "truncated-tiff": (make_truncated_tiff, "TRUNCATED"),
    "wrong-magic": (make_wrong_magic, "FORMAT_UNRECOGNIZED"),
    "renamed-text": (make_renamed_text, "FORMAT_UNRECOGNIZED"),
    "pixel-bomb-tiff": (make_pixel_bomb_tiff, "DIMENSIONS_TOO_LARGE"),
    "pixel-bomb-hdf5": (make_pixel_bomb_hdf5, "DIMENSIONS_TOO_LARGE"),
    "hdf5-external-link": (make_hdf5_external_link, "EXTERNAL_REFERENCE"),
    "hdf5-external-storage": (make_hdf5_external_storage, "EXTERNAL_REFERENCE"),
    "hdf5-virtual-dataset": (make_hdf5_virtual, "EXTERNAL_REFERENCE"),
    "truncated-hdf5": (make_truncated_hdf5, "TRUNCATED"),
    "corrupt-ifd": (make_corrupt_ifd, "FORMAT_CORRUPT"),
    "netcdf3": (make_netcdf3, "FORMAT_UNRECOGNIZED"),
    "corrupt-zarr": (make_corrupt_zarr, "FORMAT_CORRUPT"),
    "corrupt-strip": (make_corrupt_strip, "FORMAT_CORRUPT"),
}


def published(home: Path) -> list[Path]:
    root = home / "store" / "versions"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_gives_coded_error(case: str, tmp_path: Path) -> None:
    make, code = CASES[case]
    report = validate(make(tmp_path))
    assert report["valid"] is False
    assert [e["code"] for e in report["errors"]] == [code], report["errors"]
    assert report["errors"][0]["message"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_ingest_publishes_nothing(case: str, tmp_path: Path, catalog_env: str, home: Path) -> None:
    make, code = CASES[case]
    with pytest.raises(ValidationFailed) as info:
        ingest(make(tmp_path), "hostile", case)
    assert info.value.code == code
    assert published(home) == []
    counts = Catalog().counts()
    assert counts["versions"] == 0 and counts["dataset_versions"] == 0
    staging = home / "store" / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def _limit_memory() -> None:
    # 4 GiB of address space: any attempt to allocate a declared 40 GB image fails loudly.
    resource.setrlimit(resource.RLIMIT_AS, (4 * 1024**3, 4 * 1024**3))


@pytest.mark.parametrize("case", ["pixel-bomb-tiff", "pixel-bomb-hdf5", "truncated-tiff"])
def test_cli_exit_1_without_hang_or_allocation(case: str, tmp_path: Path, home: Path) -> None:
    make, code = CASES[case]
    path = make(tmp_path)
    for args in (["validate", str(path)], ["ingest", str(path), "--namespace", "h", "--dataset", "d"]):
        proc = subprocess.run(
            [sys.executable, "-m", "imagelib", *args, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_limit_memory,
        )
        assert proc.returncode == 1, proc.stderr
        report = json.loads(proc.stdout)
        assert report["errors"][0]["code"] == code
    assert published(home) == []


@pytest.mark.parametrize(
    "path", ["/vsicurl/http://127.0.0.1:9/x.tif", "http://127.0.0.1:9/x.tif", "/vsizip//tmp/a.zip"]
)
def test_network_and_vsi_paths_refused(path: str) -> None:
    report = validate(path)
    assert report["errors"][0]["code"] == "EXTERNAL_REFERENCE"


def test_content_not_suffix_decides_format(tmp_path: Path) -> None:
    renamed = tmp_path / "actually-a-tiff.h5"
    shutil.copyfile(DATA / "byte.tif", renamed)
    report = validate(renamed)
    assert report["valid"] and report["info"]["format"] == "geotiff"
    assert report["info"]["shape"] == [1, 20, 20]


def test_plain_rgb_tiff_is_band_first_with_correct_levels(tmp_path: Path, home: Path) -> None:
    """tifffile reports pixel-interleaved RGB as YXS; imagelib stores it as band,y,x."""
    import tifffile

    import imagelib
    from imagelib.multiscale import downsample2

    rgb = np.random.default_rng(5).integers(0, 255, (300, 500, 3), dtype=np.uint8)
    path = tmp_path / "plain-rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    version = imagelib.ingest(path, "plain", "rgb")["version"]
    stored = imagelib.open(version)
    assert stored.dims == ("band", "y", "x") and stored.shape == (3, 300, 500)
    np.testing.assert_array_equal(stored.values, rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(imagelib.open(version, level=1).values, downsample2(rgb.transpose(2, 0, 1)))


def test_a_failed_ingest_stops_its_copy_and_leaves_nothing(
    tmp_path: Path, catalog_env: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pixels that fail to decode midway: the copy of the original running beside the pixel pass stops
    at its next block (it is not waited for to the end), and the staging prefix is removed."""
    import threading

    from imagelib import ingestion, stored
    from imagelib.errors import InputError
    from imagelib.hashing import BLOCK

    source = tmp_path / "big.tif"
    data = np.random.default_rng(0).integers(0, 255, (3, 2400, 2400), dtype=np.uint8)  # 17 MB: 3 blocks
    with rasterio.open(source, "w", driver="GTiff", width=2400, height=2400, count=3, dtype="uint8") as dst:
        dst.write(data)
    assert source.stat().st_size > 2 * BLOCK
    copied: list[int] = []
    first_block = threading.Event()
    original = ingestion.SourceCopy._on_bytes

    def slow_copy(self: ingestion.SourceCopy, count: int) -> None:
        copied.append(count)
        first_block.set()
        self._stop.wait(timeout=30)  # hold the copy until the ingest gives up (or 30 s pass)
        original(self, count)

    def failing_pixels(*_: object, **__: object) -> None:
        first_block.wait(timeout=30)
        raise InputError("block 7 does not decode")

    monkeypatch.setattr(ingestion.SourceCopy, "_on_bytes", slow_copy)
    monkeypatch.setattr(stored.Staging, "write_levels", failing_pixels)
    with pytest.raises(ValidationFailed) as info:
        ingest(source, "hostile", "stopped")
    assert info.value.code == "FORMAT_CORRUPT"
    assert copied == [BLOCK]  # the copy stopped after the block it was on
    assert published(home) == []
    staging = home / "store" / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []
