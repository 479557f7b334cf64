"""The REST client of ``gwcli``: every read and every change goes through the gateway's API.

The API is ceph-iscsi's ``rbd-target-api`` (served by ``iscsigw.api``), so requests are shaped
the way gwcli 3.5 shapes them: HTTP Basic on every call, ``application/x-www-form-urlencoded``
bodies with ``None`` values left out, success only on status 200, and on failure the reply's
``message`` is what the user sees.

Where the API lives comes either from a URL (``--api http://USER:PASSWORD@IP:PORT``) or from
``iscsi-gateway.cfg`` (``[config]`` ``api_host``, ``api_port``, ``api_user``, ``api_password``,
``api_secure``) the way ceph-iscsi's gwcli finds it, except that ``api_host`` is honoured when
it names one address (ceph-iscsi always calls ``localhost``).
"""

from __future__ import annotations

import base64
import configparser
import ipaddress
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CFG = Path("/etc/ceph/iscsi-gateway.cfg")
DEFAULT_API_PORT = 5000
DEFAULT_TIMEOUT = 30.0
PING_TIMEOUT = 3.0

# ceph-iscsi's defaults for the keys gwcli reads (ceph_iscsi_config/settings.py).
CFG_DEFAULTS: dict[str, str] = {
    "api_host": "::",
    "api_port": str(DEFAULT_API_PORT),
    "api_user": "admin",
    "api_password": "admin",
    "api_secure": "true",
    "api_ssl_verify": "false",
    "cluster_name": "ceph",
    "trusted_ip_list": "",
    "minimum_gateways": "2",
}

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})

Json = dict[str, Any]
Form = Mapping[str, object | None]


class APIError(Exception):
    """A request that did not answer 200; ``str()`` is the message to show the user."""

    def __init__(self, message: str, status: int = 500, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path


class GwcliConfigError(Exception):
    """``--api`` or ``iscsi-gateway.cfg`` cannot be used to reach the API."""


def parse_bool(value: object, what: str = "value") -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` in any case (gwcli 3.5 sends ``False``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{what} {value!r} must be true or false")


@dataclass(frozen=True)
class Endpoint:
    """Where the API is and how to log in to it."""

    scheme: str
    host: str
    port: int
    user: str
    password: str
    verify_tls: bool = False
    source: str = "--api"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def with_host(self, host: str, port: int | None = None) -> Endpoint:
        """The same credentials and scheme for another gateway's API."""
        return Endpoint(
            self.scheme,
            host,
            self.port if port is None else port,
            self.user,
            self.password,
            self.verify_tls,
            self.source,
        )

    def describe(self) -> str:
        """The URL without the password, for messages."""
        return f"{self.scheme}://{self.user}@{self.base_url.split('://', 1)[1]}"


def parse_api_url(text: str) -> Endpoint:
    """``http[s]://USER:PASSWORD@HOST:PORT`` (user info percent-decoded; port default 5000).

    A bare ``HOST:PORT`` is read as ``http://admin:admin@HOST:PORT``.
    """
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise GwcliConfigError(f"--api {text!r}: the scheme must be http or https")
    host = parts.hostname
    if not host:
        raise GwcliConfigError(f"--api {text!r}: no host; expected http://USER:PASSWORD@IP:PORT")
    try:
        port = parts.port or DEFAULT_API_PORT
    except ValueError:
        raise GwcliConfigError(f"--api {text!r}: the port must be a number from 1 to 65535")
    if parts.path not in ("", "/"):
        raise GwcliConfigError(f"--api {text!r}: give only scheme, credentials, host and port")
    user = urllib.parse.unquote(parts.username) if parts.username is not None else "admin"
    password = urllib.parse.unquote(parts.password) if parts.password is not None else "admin"
    return Endpoint(parts.scheme, host, port, user, password, False, "--api")


def _connect_host(api_host: str) -> str:
    """The address to call for ``api_host``: a wildcard or empty value means this machine."""
    host = api_host.strip().strip("[]")
    if not host:
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host  # a host name
    if addr.is_unspecified:
        return "::1" if addr.version == 6 and host != "::" else "127.0.0.1"
    return str(addr)


@dataclass
class GatewayCfg:
    """The ``[config]`` values of ``iscsi-gateway.cfg`` that gwcli uses."""

    path: Path
    found: bool
    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.values.get(key, CFG_DEFAULTS.get(key, ""))

    def endpoint(self) -> Endpoint:
        where = f"{self.path}"
        try:
            secure = parse_bool(self.get("api_secure"), f"{where}: api_secure")
            verify = parse_bool(self.get("api_ssl_verify"), f"{where}: api_ssl_verify")
        except ValueError as exc:
            raise GwcliConfigError(str(exc))
        port_text = self.get("api_port")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise GwcliConfigError(f"{where}: api_port {port_text!r} must be 1 to 65535")
        return Endpoint(
            "https" if secure else "http",
            _connect_host(self.get("api_host")),
            int(port_text),
            self.get("api_user"),
            self.get("api_password"),
            verify,
            str(self.path),
        )


def read_gateway_cfg(path: Path) -> GatewayCfg:
    """Read ``[config]`` of ``iscsi-gateway.cfg``; a missing file means ceph-iscsi's defaults."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        return GatewayCfg(path, False)
    except (OSError, UnicodeDecodeError) as exc:
        raise GwcliConfigError(f"{path}: {exc}")
    except configparser.Error as exc:
        raise GwcliConfigError(f"{path}: {exc}".replace("\n", " "))
    values: dict[str, str] = {}
    if parser.has_section("config"):
        values = {k.lower(): v.strip() for k, v in parser.items("config")}
    return GatewayCfg(path, True, values)


def encode_form(form: Form | None) -> bytes:
    """``application/x-www-form-urlencoded`` with ``None`` values dropped (as gwcli 3.5)."""
    if not form:
        return b""
    pairs = [(k, str(v)) for k, v in form.items() if v is not None]
    return urllib.parse.urlencode(pairs).encode()


class APIClient:
    """Blocking calls to one gateway's REST API; one connection per call, like gwcli 3.5."""

    def __init__(self, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        token = f"{endpoint.user}:{endpoint.password}".encode()
        self._auth = "Basic " + base64.b64encode(token).decode("ascii")
        self._tls: ssl.SSLContext | None = None
        if endpoint.scheme == "https":
            self._tls = ssl.create_default_context()
            if not endpoint.verify_tls:  # ceph-iscsi never verifies the gateway certificate
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE

    def for_host(self, host: str, port: int | None = None) -> APIClient:
        """A client for another gateway's API with these credentials."""
        return APIClient(self.endpoint.with_host(host, port), self.timeout)

    def url(self, path: str, query: Form | None = None) -> str:
        quoted = urllib.parse.quote(path, safe="/:@_-.~")
        url = self.endpoint.base_url + quoted
        if query:
            url += "?" + encode_form(query).decode()
        return url

    def request(
        self,
        method: str,
        path: str,
        form: Form | None = None,
        query: Form | None = None,
        timeout: float | None = None,
    ) -> Json:
        """Send one request; return the JSON reply of a 200, raise ``APIError`` otherwise."""
        status, reply = self.raw_request(method, path, form, query, timeout)
        if status != 200:
            raise APIError(error_message(status, reply), status, method, path)
        if isinstance(reply, dict):
            return reply
        return {"data": reply}

    def raw_request(
        self,
        method: str,
        path: str,
        form: Form | None = None,
        query: Form | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return ``(status, decoded JSON or text)``; only I/O errors raise."""
        body = encode_form(form)
        req = urllib.request.Request(self.url(path, query), data=body or None, method=method)
        req.add_header("Authorization", self._auth)
        req.add_header("Accept", "application/json")
        if body:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(
                req, timeout=self.timeout if timeout is None else timeout, context=self._tls
            ) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _decode(exc.read(), f"{exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise APIError(
                f"Unable to connect to api endpoint @ {self.endpoint.describe()}: {reason}",
                500,
                method,
                path,
            )

    def get(self, path: str, query: Form | None = None, timeout: float | None = None) -> Json:
        return self.request("GET", path, query=query, timeout=timeout)

    def put(self, path: str, form: Form | None = None) -> Json:
        return self.request("PUT", path, form)

    def delete(self, path: str, form: Form | None = None) -> Json:
        return self.request("DELETE", path, form)

    def ping(self) -> str:
        """``GET /api/_ping`` → UP, UNAUTHORIZED, FORBIDDEN, PARTIAL (iSCSI down) or UNKNOWN."""
        try:
            status, _ = self.raw_request("GET", "/api/_ping", timeout=PING_TIMEOUT)
        except APIError:
            return "UNKNOWN"
        return {200: "UP", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 503: "PARTIAL"}.get(
            status, "UNKNOWN"
        )


def _decode(data: bytes, fallback: str = "") -> Any:
    text = data.decode("utf-8", "replace")
    if not text.strip():
        return fallback
    try:
        return json.loads(text)
    except ValueError:
        return text.strip() or fallback


def error_message(status: int, reply: Any) -> str:
    """The reply's ``message`` (gwcli 3.5), else the status line."""
    if isinstance(reply, dict):
        msg = reply.get("message")
        if msg is not None and msg != "":
            return msg if isinstance(msg, str) else json.dumps(msg)
        return f"{status} {json.dumps(reply)}"
    if isinstance(reply, str) and reply:
        return reply if reply.startswith(str(status)) else f"{status} {reply}"
    return str(status)
