"""Stitching accuracy on synthetic mosaics with a known truth (2D and 3D), solver comparison, fusion."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from imagelib.backend import cuda_available
from imagelib.stitching import Layout, register, solve
from imagelib.stitching.synthetic import cut, rms_error, textured_field


def _field_for(layout: Layout, seed: int):
    return textured_field(np.array(layout.mosaic_shape()) + 60, seed=seed)


@pytest.fixture(scope="module")
def mosaic2d():
    """6×6 tiles of 600² at 10 % overlap, jitter ±12 px (fractional), vignetting 60 %, SNR 15 dB."""
    layout = Layout.grid((6, 6), (600, 600), 0.1)
    return cut(_field_for(layout, 11), layout, jitter=12, seed=12, snr_db=15.0, corner=0.6)


@pytest.fixture(scope="module")
def registered2d(mosaic2d):
    return register(mosaic2d.tiles, mosaic2d.layout, max_shift=30)


def test_accuracy_2d(mosaic2d, registered2d):
    reg = registered2d
    rms, worst = rms_error(reg.positions, mosaic2d.truth)
    print(f"\n2D 6x6x600²: RMS {rms:.3f} px, max {worst:.3f} px, threshold {reg.report['threshold']:.3f}")
    assert len(reg.edges) == 60
    assert reg.report["accepted"] == 60, [e.to_dict() for e in reg.edges if not e.accepted]
    assert not reg.placed_by_model.any()
    assert rms < 0.5 and worst < 1.0
    # The report carries every edge's measured shift, score and reason.
    row = reg.report["edges"][0]
    assert set(row) >= {"tiles", "nominal", "shift", "score", "accepted", "reason"}
    assert row["reason"] == "ok" and row["score"] > reg.report["threshold"]


def test_least_squares_not_worse_than_spanning_tree(mosaic2d, registered2d):
    tree = solve(copy.deepcopy(registered2d.edges), mosaic2d.layout, solver="spanning_tree")
    rms_ls, _ = rms_error(registered2d.positions, mosaic2d.truth)
    rms_tree, _ = rms_error(tree.positions, mosaic2d.truth)
    print(f"\nleast squares RMS {rms_ls:.3f} px vs spanning tree RMS {rms_tree:.3f} px")
    assert rms_ls <= rms_tree


def _covered_twice(
    origin: np.ndarray, shape: tuple[int, int], positions: np.ndarray, tile: int
) -> np.ndarray:
    """Pixels of the window at ``origin`` that lie inside at least two tiles placed at ``positions``."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    cover = np.zeros(shape, int)
    for lo in positions - origin:
        cover += (yy >= lo[0]) & (yy <= lo[0] + tile - 1) & (xx >= lo[1]) & (xx <= lo[1] + tile - 1)
    return cover >= 2


def test_fused_overlap_below_noise_floor(mosaic2d, registered2d):
    m, reg = mosaic2d, registered2d
    dark = np.full(m.flat.shape, m.background, dtype=np.float32)
    mosaic = reg.fuse(flat=m.flat, dark=dark, chunks=(256, 256))
    # The corner of tile 7 shared with tiles 0, 1 and 6 (two- and four-fold overlaps).
    size = (100, 100)
    q0 = np.ceil(reg.positions[7]).astype(int)
    fused = mosaic.isel(y=slice(q0[0], q0[0] + 100), x=slice(q0[1], q0[1] + 100)).values.astype(np.float64)
    offset = (m.truth - reg.positions).mean(axis=0)  # the free translation: q shows the field at q + offset
    truth = m.gain * m.field.sample(q0 + offset, size)
    overlap = _covered_twice(q0, size, reg.positions, 600)
    err = np.sqrt(np.mean((fused - truth)[overlap] ** 2))
    # Noise floor: tile 7 alone (flat-corrected) against the truth over its own overlap pixels.
    own = (m.tiles[7][:100, :100].astype(np.float64) - m.background) / m.flat[:100, :100]
    own_truth = m.gain * m.field.sample(m.truth[7], size)
    own_overlap = _covered_twice(m.truth[7], size, m.truth, 600)
    floor = np.sqrt(np.mean((own - own_truth)[own_overlap] ** 2))
    psnr = 20 * np.log10(np.ptp(truth) / err)
    print(f"\nfused overlap RMSE {err:.1f} < single-tile noise floor {floor:.1f} (fused PSNR {psnr:.1f} dB)")
    assert overlap.sum() > 2000
    assert err < floor


def test_accuracy_3d():
    """2×3×3 (z×y×x) tiles of 64×160×160, 10 % overlap, jitter ±4 px in z and ±8 px in y/x."""
    layout = Layout.grid((2, 3, 3), (64, 160, 160), 0.1)
    m = cut(_field_for(layout, 21), layout, jitter=(4, 8, 8), seed=22, snr_db=20.0, poisson=False)
    reg = register(m.tiles, layout, max_shift=(8, 16, 16))
    rms, worst = rms_error(reg.positions, m.truth)
    print(
        f"\n3D 2x3x3: RMS {rms:.3f} voxel, max {worst:.3f},",
        f"accepted {reg.report['accepted']}/{len(reg.edges)} edges",
    )
    assert rms < 0.5
    assert not reg.placed_by_model.any()


def test_accuracy_grid_of_z_stacks():
    """1×3×3 z-stacks: the z drift between stacks is recovered from the lateral overlaps."""
    layout = Layout.grid((1, 3, 3), (64, 160, 160), 0.1)
    m = cut(_field_for(layout, 31), layout, jitter=(4, 8, 8), seed=32, snr_db=20.0, poisson=False)
    reg = register(m.tiles, layout, max_shift=(8, 16, 16))
    rms, _ = rms_error(reg.positions, m.truth)
    z_drift = m.truth[:, 0] - m.truth[:, 0].mean()
    z_found = reg.positions[:, 0] - reg.positions[:, 0].mean()
    print(
        f"\n3D 1x3x3: RMS {rms:.3f} voxel, z drift {np.ptp(z_drift):.2f},",
        f"z error {np.abs(z_found - z_drift).max():.3f}",
    )
    assert np.ptp(z_drift) > 2.0  # there is a drift to recover
    assert rms < 0.5
    assert np.abs(z_found - z_drift).max() < 0.5


@pytest.mark.skipif(
    not cuda_available(),
    reason="no CUDA device (or no CuPy: imagelib[gpu]): NumPy/CuPy agreement needs a GPU; "
    "test_backend_dispatch_without_a_gpu checks the dispatch instead",
)
def test_numpy_and_cupy_agree():
    layout = Layout.grid((3, 3), (256, 256), 0.15)
    m = cut(_field_for(layout, 41), layout, jitter=8, seed=42)
    cpu = register(m.tiles, layout, max_shift=20, backend="numpy")
    gpu = register(m.tiles, layout, max_shift=20, backend="cupy")
    assert np.abs(cpu.positions - gpu.positions).max() < 0.05


@pytest.mark.skipif(cuda_available(), reason="a CUDA device is present: test_numpy_and_cupy_agree runs")
def test_backend_dispatch_without_a_gpu():
    """No GPU: ``auto`` is NumPy (bit-identical to ``numpy``); ``cupy`` is a coded error before any read."""
    import dask
    import dask.array as da

    from imagelib.errors import ImagelibError

    layout = Layout.grid((2, 2), (128, 128), 0.2)
    m = cut(_field_for(layout, 51), layout, jitter=4, seed=52)
    auto = register(m.tiles, layout, max_shift=8, threshold=0.2, backend="auto")
    numpy = register(m.tiles, layout, max_shift=8, threshold=0.2, backend="numpy")
    assert np.array_equal(auto.positions, numpy.positions)
    assert rms_error(auto.positions, m.truth)[0] < 0.5

    def unreadable() -> np.ndarray:
        raise RuntimeError("a tile was read before the backend was checked")

    tiles = [da.from_delayed(dask.delayed(unreadable)(), (128, 128), np.uint16) for _ in range(4)]
    single = Layout.grid((1, 1), (128, 128), 0.2)  # no edge at all: only an up-front check can refuse it
    for backend in ("cupy", "tpu"):
        for case, placed in ((tiles, layout), (tiles[:1], single)):
            with pytest.raises(ImagelibError) as info:
                register(case, placed, max_shift=8, backend=backend)
            assert info.value.code == "BACKEND_UNAVAILABLE" and info.value.field == "backend"
