"""Array backends: the same filter code runs on NumPy (CPU) or CuPy (CUDA GPU).

CuPy is optional (``imagelib[gpu]``); it is imported lazily and only when asked for or when ``"auto"``
probes for a CUDA device, so the plain install never needs it.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any, Literal

import numpy as np

from imagelib.errors import ImagelibError

BackendName = Literal["auto", "numpy", "cupy"]


def _import_cupy() -> ModuleType | None:
    """CuPy if it imports, else None (a broken CUDA install counts as absent)."""
    try:
        return importlib.import_module("cupy")
    except Exception:  # ImportError, but also CUDA driver/runtime errors raised at import
        return None


@functools.cache
def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver / no device: CuPy raises CUDARuntimeError
        return False


def gpu_info() -> dict[str, Any]:
    """The current CUDA device as ``{"available", "name", "memory": {"total", "used", "pool"}}`` (bytes;
    ``pool`` is what this process's CuPy memory pool holds); ``available`` false on the NumPy path."""
    none: dict[str, Any] = {"available": False, "name": None, "memory": None}
    if not cuda_available():
        return none
    cupy = _import_cupy()
    assert cupy is not None  # cuda_available() imported it
    try:
        device = cupy.cuda.Device()
        name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
        free, total = cupy.cuda.runtime.memGetInfo()
        pool = cupy.get_default_memory_pool().total_bytes()
    except Exception:  # a device lost since the probe (driver reset, MIG change) reads as absent
        return none
    return {
        "available": True,
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "device": int(device.id),
        "memory": {"total": int(total), "used": int(total - free), "pool": int(pool)},
    }


def array_module(name: str) -> ModuleType:
    """The array module called ``name`` (``"numpy"`` or ``"cupy"``)."""
    if name == "numpy":
        return np
    if name == "cupy":
        cupy = _import_cupy()
        if cupy is None or not cuda_available():
            raise ImagelibError(
                "backend 'cupy' needs CuPy and a CUDA device (install imagelib[gpu])",
                code="BACKEND_UNAVAILABLE",
                field="backend",
                expected="numpy",
                found=name,
            )
        return cupy
    raise ImagelibError(
        f"unknown array backend {name!r}",
        code="BACKEND_UNAVAILABLE",
        field="backend",
        expected=["auto", "numpy", "cupy"],
        found=name,
    )


def select_backend(name: BackendName | str = "auto") -> ModuleType:
    """Resolve ``"auto"|"numpy"|"cupy"`` to a module; ``auto`` is CuPy when a CUDA device is present."""
    if name == "auto":
        return array_module("cupy") if cuda_available() else np
    return array_module(name)


def is_cupy_array(array: Any) -> bool:
    """True for a ``cupy.ndarray`` (checked by type name so CuPy need not be imported)."""
    return type(array).__module__.startswith("cupy")


def get_xp(array: Any) -> ModuleType:
    """The array module (numpy or cupy) that ``array`` belongs to."""
    return array_module("cupy") if is_cupy_array(array) else np


def ndimage_for(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` for NumPy, ``cupyx.scipy.ndimage`` for CuPy."""
    return importlib.import_module("scipy.ndimage" if xp is np else "cupyx.scipy.ndimage")


def fft_for(xp: ModuleType) -> ModuleType:
    """``scipy.fft`` for NumPy (multi-threaded, keeps float32), ``cupyx.scipy.fft`` for CuPy."""
    return importlib.import_module("scipy.fft" if xp is np else "cupyx.scipy.fft")


def signal_for(xp: ModuleType) -> ModuleType:
    """``scipy.signal`` for NumPy, ``cupyx.scipy.signal`` for CuPy."""
    return importlib.import_module("scipy.signal" if xp is np else "cupyx.scipy.signal")


def to_numpy(array: Any) -> np.ndarray:
    """A host NumPy copy/view of a NumPy or CuPy array."""
    return array.get() if is_cupy_array(array) else np.asarray(array)


def to_xp(array: Any, xp: ModuleType) -> Any:
    """``array`` moved to the device of ``xp`` (no copy when it is already there)."""
    if xp is np:
        return to_numpy(array)
    return xp.asarray(array)


def gpu_cluster(**cluster_options: Any) -> Any:
    """A dask ``Client`` on a ``dask_cuda.LocalCUDACluster`` (one worker per GPU) for multi-GPU chains.

    Filter chains over dask arrays of CuPy chunks then spread across every visible GPU unchanged.
    """
    if not cuda_available():
        raise ImagelibError(
            "no CUDA device: multi-GPU needs imagelib[gpu] on a GPU machine",
            code="BACKEND_UNAVAILABLE",
            field="backend",
        )
    try:
        from dask_cuda import LocalCUDACluster
        from distributed import Client
    except ImportError as exc:
        raise ImagelibError(
            "dask-cuda is not installed (pip install imagelib[gpu])",
            code="BACKEND_UNAVAILABLE",
            field="backend",
        ) from exc
    return Client(LocalCUDACluster(**cluster_options))


#: OpenCV indexes a plane with 32-bit ints: larger arrays stay on the NumPy/scipy paths
CV2_MAX_SIZE = 2**31 - 1


@functools.cache
def cv2_module() -> ModuleType | None:
    """OpenCV (``cv2``) for the CPU fast paths, or None where the wheel is missing (NumPy/scipy then)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2
