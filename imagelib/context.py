"""The library context: one object holding the catalog, the store, the settings and the caches.

Every verb, the tile renderer, derive, the CLI and the HTTP app take a :class:`Library` explicitly
(``lib=``) or use :func:`current`. The environment only seeds the default context (xarray's
``set_options`` / zarr's ``config.set`` shape): :func:`using` overrides it for a block, and a change of
``IMAGELIB_*`` variables yields a different default context instead of stale state. Caches live on the
context and are keyed by what they depend on (store URL and version), never by version alone.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imagelib import config

if TYPE_CHECKING:
    from imagelib.catalog import Catalog
    from imagelib.storage import Store

T = TypeVar("T")
#: how many default contexts (one per distinct environment) are remembered
DEFAULT_CONTEXTS = 8


class Library:
    """Catalog + store + settings + caches; the catalog and store connect on first use."""

    def __init__(
        self,
        settings: config.Settings | None = None,
        *,
        catalog: Catalog | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings or config.settings()
        self._catalog = catalog
        self._store = store
        self._stores: dict[str, Store] = {}
        self._caches: dict[str, Any] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Library(store={self.settings.store!r}, catalog={config.redact_url(self.settings.catalog)!r})"

    @property
    def catalog(self) -> Catalog:
        """The metadata catalog (opened, and migrated if needed, on first use)."""
        with self._lock:
            if self._catalog is None:
                from imagelib.catalog import Catalog

                self._catalog = Catalog(self.settings.catalog)
            return self._catalog

    def storage_url(self, version: str) -> str:
        """Where a catalogued version is stored; NotFound when the catalog has no such version.

        Until this context opens its catalog, a SQLite catalog is read through the standard library
        (:mod:`imagelib.catalog_read`): a CLI tile export then never imports SQLAlchemy."""
        if self._catalog is None:
            from imagelib.catalog_read import storage_url

            found = storage_url(self.settings.catalog, version)
            if found is not None:
                return found
        return str(self.catalog.get_version(version)["storage_url"])

    @property
    def store(self) -> Store:
        """The object store new versions are written to."""
        with self._lock:
            if self._store is None:
                from imagelib.storage import Store

                self._store = Store(self.settings.store)
            return self._store

    def store_at(self, url: str) -> Store:
        """The store rooted at ``url`` (the default store when it is the same URL), opened once."""
        url = url.rstrip("/")
        if url == self.store.url:
            return self.store
        with self._lock:
            if url not in self._stores:
                from imagelib.storage import Store

                self._stores[url] = Store(url)
            return self._stores[url]

    def cache(self, name: str, factory: Callable[[], T]) -> T:
        """A named cache of this context, made by ``factory`` on first use (tiles, chunks, renderers)."""
        with self._lock:
            if name not in self._caches:
                self._caches[name] = factory()
            return self._caches[name]

    def clear_caches(self) -> None:
        """Forget every cached tile, chunk and opened version of this context."""
        with self._lock:
            for cache in self._caches.values():
                cache.clear()

    def close(self) -> None:
        """Drop caches and the catalog's connections."""
        self.clear_caches()
        if self._catalog is not None:
            self._catalog.engine.dispose()


def connect(
    home: str | Path | None = None,
    *,
    store_url: str | None = None,
    catalog_url: str | None = None,
    queue_url: str | None = None,
    **overrides: Any,
) -> Library:
    """A new context: the environment's settings, with ``home`` (and the store/catalog under it) and any
    explicitly given URL or setting replacing them."""
    base = config.settings()
    changes: dict[str, Any] = dict(overrides)
    if home is not None:
        root = Path(home).expanduser().resolve()
        changes.update(home=root, store=f"file://{root}/store", catalog=f"sqlite:///{root}/catalog.db")
    for key, value in (("store", store_url), ("catalog", catalog_url), ("queue", queue_url)):
        if value is not None:
            changes[key] = value
    return Library(dataclasses.replace(base, **changes))


_override: contextvars.ContextVar[Library | None] = contextvars.ContextVar("imagelib_library", default=None)
_defaults: OrderedDict[config.Settings, Library] = OrderedDict()
_defaults_lock = threading.Lock()


def default() -> Library:
    """The context the current environment describes (one per distinct set of ``IMAGELIB_*`` values)."""
    key = config.settings()
    with _defaults_lock:
        lib = _defaults.get(key)
        if lib is None:
            lib = _defaults[key] = Library(key)
            while len(_defaults) > DEFAULT_CONTEXTS:
                _defaults.popitem(last=False)[1].clear_caches()
        _defaults.move_to_end(key)
        return lib


def current(lib: Library | None = None) -> Library:
    """``lib`` when given, else the one set by :func:`using`, else the environment's default."""
    return lib or _override.get() or default()


@contextmanager
def using(lib: Library) -> Iterator[Library]:
    """Make ``lib`` the context of every verb called without ``lib=`` inside the block (thread/task local)."""
    token = _override.set(lib)
    try:
        yield lib
    finally:
        _override.reset(token)
