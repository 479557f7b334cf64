"""The OpenAPI 3 description (``GET /openapi.json``), generated from the route table."""

from __future__ import annotations

import re
from typing import Any

from .. import __version__
from .routes import ROUTES

_PARAM_DOC = re.compile(r":param (\w+): \((\w+)\) (.*)")
_PATH_PARAM = re.compile(r"{(\w+)}")


def _params(doc: str) -> list[dict[str, Any]]:
    out = []
    for name, kind, text in _PARAM_DOC.findall(doc):
        out.append({"name": name, "in": "query", "required": False, "description": text,
                    "schema": {"type": "boolean" if kind == "bool" else "string"}})  # fmt: skip
    return out


def openapi_spec() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        doc = (route.handler.__doc__ or "").strip()
        item = paths.setdefault(route.path, {})
        for method in route.methods:
            params = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in _PATH_PARAM.findall(route.path)
            ]
            op: dict[str, Any] = {
                "summary": route.summary,
                "description": doc,
                "parameters": params + (_params(doc) if method == "GET" else []),
                "responses": {
                    "200": {"description": "success (JSON)"},
                    "400": {"description": "bad input; message says what to fix"},
                    "401": {"description": "missing or wrong credentials"},
                    "403": {"description": "source address not trusted"},
                    "404": {"description": "no such object"},
                },
            }
            if route.auth != "none":
                op["security"] = [{"basic": []}]
            if method != "GET":
                form = {p["name"]: {"type": p["schema"]["type"], "description": p["description"]}
                        for p in _params(doc)}  # fmt: skip
                op["requestBody"] = {"required": False, "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "properties": form}}}}  # fmt: skip
            if route.internal:
                op["tags"] = ["internal"]
            item[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "iscsigw management API (ceph-iscsi rbd-target-api compatible)",
            "version": __version__,
        },
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
        "paths": paths,
    }


__all__ = ["openapi_spec"]
