"""How ``run_gateway`` serves the REST API (kept apart so the CLI can build it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.settings import GatewaySettings


@dataclass(frozen=True)
class ApiOptions:
    """How (and whether) to serve the REST API next to the portals."""

    settings: GatewaySettings
    host: str
    port: int
    certfile: Path | None = None
    keyfile: Path | None = None
    print_url: bool = False  # --demo: print "API URL: http://USER:PASSWORD@IP:PORT"
    default_backstore: str = "file"


__all__ = ["ApiOptions"]
