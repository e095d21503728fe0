"""The GPU facts of ``/health/ready`` and ``/metrics`` come from :mod:`imagelib.backend` (the device the
filters run on): on the NumPy path the block says ``available: false`` and no GPU metric is exported;
where CuPy sees a CUDA device the values are the device's own (checked against CuPy directly, and an
allocation of this process shows up in them)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import imagelib
from imagelib import backend, observability
from imagelib.api import ApiSettings, create_app

GPU_REASON = "needs CuPy and a CUDA device (pip install imagelib[gpu] on a GPU machine)"


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    observability._gpu_cache.clear()  # the probe caches for 10 s: each test sees the device as it is now
    lib = imagelib.connect()
    with TestClient(create_app(lib, settings=ApiSettings())) as c:
        yield c
    lib.close()


def gpu_metrics(text: str) -> dict[tuple[str, str], float]:
    """``imagelib_gpu_memory_bytes`` samples of a scrape as {(gpu, kind): value}."""
    pattern = r'^imagelib_gpu_memory_bytes\{gpu="([^"]*)",kind="(\w+)"\} (\S+)$'
    return {(g, k): float(v) for g, k, v in re.findall(pattern, text, re.M)}


@pytest.mark.skipif(backend.cuda_available(), reason="checks the CPU-only (NumPy) path")
def test_without_a_gpu_the_block_says_so_and_nothing_breaks(client: TestClient) -> None:
    ready = client.get("/v1/health/ready")
    assert ready.status_code == 200, ready.text  # no GPU is not a reason to be unready
    assert ready.json()["gpu"] == {"available": False, "name": None, "memory": None}
    if importlib.util.find_spec("cupy") is None:  # no CuPy at all: the backend cannot claim a device
        assert backend.select_backend("auto").__name__ == "numpy"
    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and "imagelib_http_request_duration_seconds" in scrape.text
    assert not gpu_metrics(scrape.text) and "imagelib_gpu_memory_bytes" not in scrape.text


@pytest.mark.gpu
@pytest.mark.skipif(not backend.cuda_available(), reason=GPU_REASON)
def test_with_a_gpu_the_block_and_metric_are_the_devices(client: TestClient) -> None:
    import cupy

    _, total = cupy.cuda.runtime.memGetInfo()
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    body = client.get("/v1/health/ready").json()["gpu"]
    assert body["available"] is True and body["name"] == name
    assert body["memory"]["total"] == total and 0 < body["memory"]["used"] <= total
    size = 512 * 2**20
    block = cupy.empty(size, dtype=cupy.uint8)  # held by this process's pool: must show up
    try:
        observability._gpu_cache.clear()
        after = client.get("/v1/health/ready").json()["gpu"]["memory"]
        assert after["pool"] >= size
        assert after["used"] >= body["memory"]["used"] + size * 0.9  # other processes may free a little
        samples = gpu_metrics(client.get("/metrics").text)
        assert samples[(name, "total")] == total and samples[(name, "pool")] >= size
    finally:
        del block
        cupy.get_default_memory_pool().free_all_blocks()
