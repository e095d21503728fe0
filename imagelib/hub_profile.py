"""What a kernel of a hub profile sets up at start (IPython startup file written by the hub's spawner).

``IMAGELIB_PROFILE=gpu`` starts a dask-cuda cluster when a CUDA device is there; without one the kernel
says it falls back to the NumPy backend and carries on. Never raises: a kernel must always start.
"""

from __future__ import annotations

import os
from typing import Any

from imagelib.backend import cuda_available, gpu_cluster
from imagelib.errors import ImagelibError

#: the dask client of the GPU profile (None on CPU or without a device)
client: Any = None


def start_profile(profile: str | None = None) -> str:
    """Set up the profile (``$IMAGELIB_PROFILE`` by default), print one line saying what it got, return it."""
    global client
    profile = profile or os.environ.get("IMAGELIB_PROFILE", "cpu")
    if profile != "gpu":
        message = "imagelib: CPU profile, NumPy backend"
    elif not cuda_available():
        message = "imagelib: GPU profile, but no CUDA device is visible: using the NumPy backend"
    else:
        try:
            client = gpu_cluster()
            message = f"imagelib: GPU profile, CuPy backend, dask-cuda cluster at {client.dashboard_link}"
        except ImagelibError as exc:
            message = f"imagelib: GPU profile, CuPy backend without a dask-cuda cluster ({exc.message})"
    print(message, flush=True)
    return message
