"""Backends by name: ``open_backend("file", path=..., size=...)``.

Each backend module registers a factory; native libraries are imported only when that
backend is opened, so the gateway runs without Ceph installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ConfigError
from .base import BlockBackend

Factory = Callable[..., Awaitable[BlockBackend]]

# name -> "module:function"; resolved lazily so `rbd` is imported only when used.
_FACTORIES: dict[str, str] = {
    "memory": "iscsigw.backends.memory:open_memory",
    "file": "iscsigw.backends.file:open_file",
    "rbd": "iscsigw.backends.rbd:open_rbd",
}


def register(name: str, target: str) -> None:
    """Register a backend factory given as ``"package.module:function"``."""
    _FACTORIES[name] = target


def names() -> list[str]:
    return sorted(_FACTORIES)


async def open_backend(name: str, **params: Any) -> BlockBackend:
    """Open a backend by registry name; unknown names are a ConfigError."""
    try:
        target = _FACTORIES[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}; known backends: {', '.join(names())}")
    module_name, _, func = target.partition(":")
    factory: Factory = getattr(importlib.import_module(module_name), func)
    return await factory(**params)
