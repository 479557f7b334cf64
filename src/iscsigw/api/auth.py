"""Who may call the API: ceph-iscsi's two checks, with its messages and status codes.

* ``basic``: HTTP Basic credentials equal to ``api_user``/``api_password`` of
  iscsi-gateway.cfg, else 401 "Missing credentials" / "username/password mismatch with the
  configuration file". Compared in constant time.
* ``restricted``: first the source address — it must be loopback, in ``trusted_ip_list``, or
  an address of a gateway of the configuration (portal IPs and registered API hosts) — else
  403 "API access not available to <ip>"; then the Basic check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..gateway.management import GatewayManager


def client_ip(request: Request) -> str:
    host = request.client.host if request.client else ""
    host = host.rsplit("%", 1)[0]
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    return host


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


def _canonical(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


async def ip_allowed(manager: GatewayManager, ip: str) -> bool:
    if _is_loopback(ip):
        return True
    ip = _canonical(ip)
    if ip in {_canonical(t) for t in manager.settings.trusted_ip_list}:
        return True
    doc = await asyncio.to_thread(manager.store.load_dict)
    return ip in {_canonical(a) for a in manager.known_addresses(doc)}


def check_basic(request: Request, manager: GatewayManager) -> JSONResponse | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return JSONResponse({"message": "Missing credentials"}, status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="iscsigw"'})  # fmt: skip
    try:
        user, sep, password = base64.b64decode(token.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep, user, password = "", "", ""
    want_user, want_password = manager.auth
    good = bool(sep) & hmac.compare_digest(user.encode(), want_user.encode())
    good &= hmac.compare_digest(password.encode(), want_password.encode())
    if not good:
        return JSONResponse(
            {"message": "username/password mismatch with the configuration file"},
            status_code=401,
        )
    return None


async def check_access(
    request: Request, manager: GatewayManager, level: str
) -> JSONResponse | None:
    """None when the request may proceed, else the refusal to send."""
    if level == "none":
        return None
    if level == "restricted":
        ip = client_ip(request)
        if not await ip_allowed(manager, ip):
            return JSONResponse({"message": f"API access not available to {ip}"}, status_code=403)
    return check_basic(request, manager)


__all__ = ["check_access", "check_basic", "client_ip", "ip_allowed"]
