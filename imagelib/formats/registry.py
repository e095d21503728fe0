"""The reader registry: one place that lists the readers, in the order they are asked, like xarray engines.

A reader has a ``name``, ``guess_can_open(path)`` (content, never the suffix), ``open(path, address)`` and
optionally ``open_levels(path, address)`` (ready-made pyramid levels). The built-in readers come first in a
fixed order (TIFF, HDF5/NetCDF4, Zarr); third-party readers follow, in name order, from the entry-point
group ``imagelib.readers`` (the entry point names a reader class or instance)::

    [project.entry-points."imagelib.readers"]
    fits = "my_package.fits:FitsReader"

A plugin that fails to load is skipped with a ``RuntimeWarning``; it never breaks the built-in formats.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

import xarray as xr

from imagelib.errors import InputError

ENTRY_POINT_GROUP = "imagelib.readers"


@runtime_checkable
class Reader(Protocol):
    """What the registry needs from a reader."""

    name: str

    def guess_can_open(self, path: Path) -> bool:
        """True when the content (magic bytes, structure) is this reader's format; never raises."""
        ...

    def open(self, path: Path, address: str | None) -> xr.DataArray:
        """The raster as a lazy DataArray whose attrs come from :meth:`RasterMeta.to_attrs`."""
        ...


class ReaderRegistry:
    """An ordered set of readers: built-ins first, then ``imagelib.readers`` entry points."""

    def __init__(self, builtins: list[Reader], group: str | None = ENTRY_POINT_GROUP):
        self._builtins = list(builtins)
        self._group = group
        self._plugins: list[Reader] | None = None
        self._runtime: list[Reader] = []

    def register(self, reader: Reader) -> None:
        """Add a reader in code (after the built-ins and entry points); a name may be registered once."""
        if any(r.name == reader.name for r in self):
            raise ValueError(f"a reader named {reader.name!r} is already registered")
        self._runtime.append(reader)

    def unregister(self, name: str) -> None:
        """Remove a reader registered with :meth:`register`."""
        self._runtime = [r for r in self._runtime if r.name != name]

    def refresh(self) -> None:
        """Forget the loaded entry points (a package installed since start-up is then found)."""
        self._plugins = None

    def __iter__(self) -> Iterator[Reader]:
        yield from self._builtins
        yield from self._entry_point_readers()
        yield from self._runtime

    def names(self) -> list[str]:
        """Reader names in the order they are asked."""
        return [r.name for r in self]

    def get(self, name: str) -> Reader:
        """The reader called ``name``."""
        for reader in self:
            if reader.name == name:
                return reader
        raise KeyError(name)

    def guess(self, path: Path) -> Reader | None:
        """The first reader that claims the content, or None."""
        for reader in self:
            try:
                if reader.guess_can_open(path):
                    return reader
            except Exception:  # a plugin's sniffing bug must not stop the others from being asked
                continue
        return None

    def _entry_point_readers(self) -> list[Reader]:
        if self._plugins is None:
            self._plugins = _load_group(self._group, {r.name for r in self._builtins}) if self._group else []
        return self._plugins


def _load_group(group: str, taken: set[str]) -> list[Reader]:
    found: list[Reader] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.name in taken:
            warnings.warn(
                f"imagelib reader plugin {ep.value!r} reuses the name {ep.name!r}; skipped",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        try:
            obj = ep.load()
            reader = obj() if isinstance(obj, type) else obj
        except Exception as exc:
            warnings.warn(
                f"imagelib reader plugin {ep.name!r} failed to load: {exc}", RuntimeWarning, stacklevel=3
            )
            continue
        if not isinstance(reader, Reader):
            warnings.warn(f"imagelib reader plugin {ep.name!r} is not a reader", RuntimeWarning, stacklevel=3)
            continue
        taken.add(reader.name)
        found.append(reader)
    return found


_DEFAULT: ReaderRegistry | None = None


def readers() -> ReaderRegistry:
    """The process-wide registry (built-ins in their fixed order, then plugins)."""
    global _DEFAULT
    if _DEFAULT is None:
        from imagelib.formats.hdf5 import HDF5Reader
        from imagelib.formats.tiff import TiffReader
        from imagelib.formats.zarr_store import ZarrReader

        _DEFAULT = ReaderRegistry([TiffReader(), HDF5Reader(), ZarrReader()])
    return _DEFAULT


def reader_for(path: Path) -> Reader:
    """The reader for an existing local path, or a coded FILE_EMPTY / FORMAT_UNRECOGNIZED error."""
    if not path.is_dir() and path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)", code="FILE_EMPTY", field="size", found=0)
    reader = readers().guess(path)
    if reader is not None:
        return reader
    from imagelib.formats.detect import unrecognized

    raise unrecognized(path)
