"""The op model: one pydantic class per filter op, registered by its ``op`` name (titiler's algorithm shape).

Every op receives float arrays and returns float arrays of the same dtype. Three scopes say how the
chain engine feeds an op:

* ``"band"``   — pointwise across bands: ``__call__`` gets ``(band, *spatial)`` (halo 0).
* ``"local"``  — neighbourhood op with a finite ``halo``: ``__call__`` gets one 2D plane or 3D volume;
  tiled/chunked execution with that halo equals the whole-array result.
* ``"global"`` — needs the whole plane (FFT, circular deconvolution): ``halo`` is only the overlap used
  for tapered tiles when the plane does not fit the memory budget (see ``imagelib.filters.lazy``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from imagelib.errors import ImagelibError

Scope = Literal["band", "local", "global"]


class Op(BaseModel):
    """Base of every filter op: typed parameters, a halo and ``__call__(array, xp)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: str
    scope: ClassVar[Scope] = "local"
    #: True when the output band count differs from the input's (e.g. ``band_math``).
    changes_bands: ClassVar[bool] = False

    def halo(self, ndim: int) -> tuple[int, ...]:
        """Overlap depth needed per spatial axis (``ndim`` = 2 or 3) for exact tiled results."""
        return (0,) * ndim

    def check(self, n_bands: int | None, ndim: int | None, index: int) -> None:
        """Raise a coded error when the op cannot apply to data with that band count / spatial ndim."""

    def out_bands(self, n_bands: int) -> int:
        """Band count of the output for an input with ``n_bands`` bands."""
        return n_bands

    def fit(self, array: Any, xp: ModuleType) -> Op:
        """This op with any whole-array statistics precomputed (default: nothing to fit)."""
        return self

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        raise NotImplementedError


class OpRegistry(Mapping[str, "type[Op]"]):
    """Op name → op model class: an explicit object (see :mod:`imagelib.filters.registry` for the built-in
    ops); :meth:`add` registers a third-party op."""

    def __init__(self, ops: Iterable[type[Op]] = ()) -> None:
        self._ops: dict[str, type[Op]] = {}
        for cls in ops:
            self.add(cls)

    def add(self, cls: type[Op]) -> type[Op]:
        """Register ``cls`` under its ``op`` literal (usable as a class decorator); names are unique."""
        name = cls.model_fields["op"].default
        if not isinstance(name, str) or name in self._ops:
            raise ValueError(f"op name {name!r} is missing or already registered")
        self._ops[name] = cls
        return cls

    def __getitem__(self, name: str) -> type[Op]:
        return self._ops[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ops)

    def __len__(self) -> int:
        return len(self._ops)


def param_error(
    index: int, name: str, message: str, *, expected: Any = None, found: Any = None
) -> ImagelibError:
    """A ``PARAM_INVALID`` error pointing at ``chain[index].name``."""
    return ImagelibError(
        message, code="PARAM_INVALID", field=f"chain[{index}].{name}", expected=expected, found=found
    )


def per_axis(value: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    """A scalar broadcast to ``ndim`` axes, or a per-axis list checked by the caller."""
    if isinstance(value, int | float):
        return (float(value),) * ndim
    return tuple(float(v) for v in value)


def check_axes(value: Any, ndim: int | None, index: int, name: str) -> None:
    """A per-axis list must have one entry per spatial axis."""
    if ndim is not None and not isinstance(value, int | float) and len(value) != ndim:
        raise param_error(
            index, name, f"{name} needs one value per spatial axis", expected=ndim, found=len(value)
        )


def gaussian_radius(sigma: float, truncate: float) -> int:
    """The kernel radius scipy.ndimage uses for a Gaussian of ``sigma`` truncated at ``truncate`` sd."""
    return int(truncate * sigma + 0.5)


def ceil_int(x: float) -> int:
    """``math.ceil`` as an int, tolerant to float noise just above an integer."""
    return math.ceil(x - 1e-9)
