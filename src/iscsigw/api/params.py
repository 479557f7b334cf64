"""Request parameters the way ceph-iscsi clients send them.

gwcli and the Ceph Dashboard send ``application/x-www-form-urlencoded`` bodies on PUT, DELETE
and even GET (``GET /api/_clientlun`` carries ``disk=…``), and query strings on GET
(``/api/config?decrypt_passwords=True``). Both are read and merged (the body wins). Booleans
arrive as ``true``/``True``/``False``; ``controls`` is a JSON object in a string.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from ..config.names import parse_size
from ..errors import ConfigError

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


class Params:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def text(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def required(self, name: str, hint: str = "") -> str:
        value = self.values.get(name, "")
        if not value:
            raise ConfigError(f"parameter {name!r} is required" + (f" ({hint})" if hint else ""))
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.values.get(name)
        if raw is None or raw == "":
            return default
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"parameter {name!r}: {raw!r} must be true or false")

    def csv(self, name: str) -> list[str]:
        return [item.strip() for item in self.text(name).split(",") if item.strip()]

    def controls(self, name: str = "controls") -> dict[str, Any]:
        raw = self.values.get(name)
        if raw is None or raw.strip() == "":
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"Unexpected or invalid controls - {name} must be a JSON object such as "
                f'{{"cmdsn_depth": 64}} ({exc.msg})'
            )
        if not isinstance(value, dict):
            raise ConfigError(
                f"Unexpected or invalid controls - {name} must be a JSON object such as "
                f'{{"cmdsn_depth": 64}}'
            )
        return value

    def size(self, name: str = "size") -> int | None:
        raw = self.values.get(name)
        if raw is None or raw.strip() == "":
            return None
        text = raw.strip()
        if text.isdigit():
            raise ConfigError(
                f"size {text!r} needs a unit: a number followed by M, G or T, e.g. 100G"
            )
        size = parse_size(text, "size")
        if size <= 0:
            raise ConfigError(f"size {text!r} must be larger than zero")
        if size % 512:
            raise ConfigError(f"size {text!r} must be a multiple of 512 bytes")
        return size


async def read_params(request: Request) -> Params:
    values: dict[str, str] = dict(request.query_params)
    body = await request.body()
    if body:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                doc = json.loads(body)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"request body is not valid JSON: {exc.msg}")
            if not isinstance(doc, dict):
                raise ConfigError("a JSON request body must be an object")
            for k, v in doc.items():
                values[str(k)] = v if isinstance(v, str) else json.dumps(v)
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError("the request body is not UTF-8 form data")
            values.update(parse_qsl(text, keep_blank_values=True))
    return Params(values)


__all__ = ["Params", "read_params"]
