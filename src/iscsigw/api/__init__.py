"""The ceph-iscsi compatible REST API (``rbd-target-api`` routes) on starlette + uvicorn.

Routes only: every rule about what may change lives in ``config.edits`` and every effect on
the running gateway in ``gateway.management``.
"""

from .app import build_app
from .server import ApiServer, start_api

__all__ = ["ApiServer", "build_app", "start_api"]
