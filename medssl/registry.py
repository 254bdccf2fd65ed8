"""Named registries of components (backbones, heads, losses, kernels, views, methods, probes).

A component registers itself with ``@LOSSES.register("yaware")`` in its own module; the subpackage
``__init__`` imports its modules. The first look-up in any registry imports those subpackages
(``populate``), so ``import medssl`` stays fast (``medssl --help`` does not load MONAI) while every
look-up sees every component. Configs select components by ``name`` plus flat keyword arguments, checked
against the factory's signature before any work starts.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable, Generic, TypeVar

from medssl.errors import ConfigError

T = TypeVar("T", bound=Callable[..., Any])

SUBPACKAGES = ("medssl.models", "medssl.transforms", "medssl.losses", "medssl.methods", "medssl.eval")
_populated = False


def populate() -> None:
    """Import every subpackage that registers components (once)."""
    global _populated
    if not _populated:
        _populated = True
        for name in SUBPACKAGES:
            importlib.import_module(name)


class Registry(Generic[T]):
    """A mapping ``name -> factory`` with helpful errors for typos and wrong keyword arguments."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        populate()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        populate()
        return name in self._items

    def get(self, name: str) -> T:
        populate()
        if name not in self._items:
            close = difflib.get_close_matches(str(name), self.names(), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}"
            )
        return self._items[name]

    def accepted_kwargs(self, name: str) -> list[str]:
        sig = inspect.signature(self.get(name))
        return [p for p in sig.parameters if p not in ("self", "args", "kwargs")]

    def check_kwargs(self, name: str, kwargs: dict[str, Any], where: str = "") -> None:
        """Raise ``ConfigError`` naming the key if ``kwargs`` do not bind to the factory's signature."""
        factory = self.get(name)
        sig = inspect.signature(factory)
        takes_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        accepted = self.accepted_kwargs(name)
        for key in kwargs:
            if key not in sig.parameters and not takes_var_kw:
                close = difflib.get_close_matches(key, accepted, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"unknown key '{where}{key}' for {self.kind} {name!r}.{hint} "
                    f"Accepted: {', '.join(accepted)}"
                )

    def build(self, name: str, /, **kwargs: Any) -> Any:
        self.check_kwargs(name, kwargs)
        return self.get(name)(**kwargs)


BACKBONES: Registry[Any] = Registry("backbone")
HEADS: Registry[Any] = Registry("head")
LOSSES: Registry[Any] = Registry("loss")
KERNELS: Registry[Any] = Registry("kernel")
VIEWS: Registry[Any] = Registry("view preset")
METHODS: Registry[Any] = Registry("method")
PROBES: Registry[Any] = Registry("probe")
