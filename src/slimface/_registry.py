"""A small name -> factory registry shared by every stage (backbones, heads, quantizers,
detectors, templates, search indexes), in the style of timm's ``_registry.py``.

Names are looked up case-insensitively with ``-`` and ``_`` treated alike, so
``dlib-resnet`` and ``dlib_resnet`` are the same entry. A name may carry a ``.tag`` suffix
(``mobilefacenet.ms1m``) that is passed to the factory as ``tag=`` when the factory accepts it.
"""
from __future__ import annotations

import difflib
import inspect
import warnings
from typing import Any, Callable, Generic, Iterator, TypeVar

from slimface.errors import UnknownNameError

T = TypeVar("T")


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """Maps names to factories; ``create`` drops ``None`` kwargs so CLI defaults pass through."""

    def __init__(self, kind: str, populate: Callable[[], None] | None = None):
        """``populate`` imports the modules that register entries; it runs once, before the
        first lookup, so registering modules can be imported only when an entry is needed."""
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._display: dict[str, str] = {}
        self._hidden: set[str] = set()
        self._populate = populate

    def _populated(self) -> Registry[T]:
        populate, self._populate = self._populate, None  # once, even if it reads us again
        if populate is not None:
            populate()
        return self

    def register(self, fn: Callable[..., T] | None = None, *, name: str | None = None,
                 aliases: tuple[str, ...] = (), hidden_aliases: tuple[str, ...] = ()) -> Any:
        """Decorator; the function's own name is the key unless ``name`` is given.

        ``aliases`` are listed by :meth:`names`; ``hidden_aliases`` (former names kept so old
        files and scripts still work) are looked up the same way but never listed or suggested.
        """

        def wrap(f: Callable[..., T]) -> Callable[..., T]:
            for n in (name or f.__name__, *aliases, *hidden_aliases):
                k = _key(n)
                if k in self._factories and self._factories[k] is not f:
                    warnings.warn(f"{self.kind} {n!r} registered twice; the later one wins",
                                  stacklevel=3)
                self._factories[k] = f
                self._display.setdefault(k, n)
            self._hidden.update(_key(n) for n in hidden_aliases)
            return f

        return wrap(fn) if fn is not None else wrap

    def __contains__(self, name: str) -> bool:
        return _key(name.split(".")[0]) in self._populated()._factories

    def names(self) -> list[str]:
        """Registered names (aliases included, hidden aliases left out), sorted."""
        self._populated()
        return sorted(self._display[k] for k in self._factories if k not in self._hidden)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable[..., T]:
        base = _key(name.split(".")[0])
        if base not in self._populated()._factories:
            listed = [k for k in self._factories if k not in self._hidden]
            close = difflib.get_close_matches(base, listed, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(self._display[c] for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})")
        return self._factories[base]

    def create(self, name: str, **kwargs: Any) -> T:
        """Build ``name``; kwargs that are ``None`` are dropped so factory defaults apply."""
        fn = self.get(name)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if "." in name:
            tag = name.split(".", 1)[1]
            if "tag" in inspect.signature(fn).parameters:
                kwargs.setdefault("tag", tag)
        return fn(**kwargs)
