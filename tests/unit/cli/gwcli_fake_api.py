"""A small stand-in for the gateway REST API, for gwcli's unit tests.

It keeps a ceph-iscsi shaped config in memory, applies the changes gwcli sends with just
enough logic for the shell to show the result, and records every request (method, path,
form fields, query, Basic credentials) so tests can assert exactly what was sent. Loopback
only, port chosen by the kernel.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Json = dict[str, Any]
SIZES = {"K": 10, "M": 20, "G": 30, "T": 40}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    if text[-1:] in SIZES:
        return int(text[:-1]) << SIZES[text[-1]]
    return int(text)


@dataclass
class Req:
    method: str
    path: str
    form: dict[str, str]
    query: dict[str, str]
    user: str
    password: str


@dataclass
class FakeAPI:
    user: str = "admin"
    password: str = "secret-pw"
    hostname: str = "gw1"
    requests: list[Req] = field(default_factory=list)
    config: Json = field(default_factory=dict)
    # (method, path) -> (status, json) to answer instead of the normal handling
    overrides: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    logged_in: set[str] = field(default_factory=set)
    # merged into every change reply (e.g. iscsigw's per-gateway "gateways" report)
    change_extra: Json = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.config:
            self.config = {
                "disks": {},
                "gateways": {},
                "targets": {},
                "discovery_auth": {
                    "username": "",
                    "password": "",
                    "password_encryption_enabled": False,
                    "mutual_username": "",
                    "mutual_password": "",
                    "mutual_password_encryption_enabled": False,
                },
                "version": 11,
                "epoch": 0,
            }
        self.lock = threading.Lock()
        handler = self._handler_class()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def changes(self) -> list[Req]:
        """Every request that was not a GET."""
        return [r for r in self.requests if r.method != "GET"]

    def calls(self) -> list[tuple[str, str, dict[str, str]]]:
        return [(r.method, r.path, r.form) for r in self.changes()]

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
                query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                user = password = ""
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                path = urllib.parse.unquote(parts.path)
                req = Req(self.command, path, form, query, user, password)
                with api.lock:
                    api.requests.append(req)
                    if (user, password) != (api.user, api.password):
                        status, reply = 401, {"message": "username/password mismatch"}
                    elif (self.command, path) in api.overrides:
                        status, reply = api.overrides[(self.command, path)]
                    else:
                        try:
                            status, reply = api.dispatch(self.command, path, form)
                        except KeyError as exc:
                            status, reply = 404, {"message": f"not found: {exc}"}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = _handle

        return Handler

    # -- the API -------------------------------------------------------------------------------

    def dispatch(self, method: str, path: str, form: dict[str, str]) -> tuple[int, Any]:
        parts = path.split("/")[2:]  # drop '', 'api'
        route, args = parts[0], parts[1:]
        cfg = self.config
        ok: tuple[int, Any] = (200, {"message": "ok", **self.change_extra})
        if method == "GET":
            if route == "config":
                return 200, copy.deepcopy(cfg)
            if route == "sysinfo" and args == ["hostname"]:
                return 200, {"data": self.hostname}
            if route == "_ping":
                return 200, {"message": "pong"}
            if route == "settings":
                return 200, {"backstores": ["file", "memory"], "api_version": 2}
            if route == "disk":
                key = "/".join(args)
                disk = dict(cfg["disks"][key])
                disk["status"] = {"state": "Online", "lock_owner": disk.get("owner", "")}
                return 200, disk
            if route == "clientinfo":
                client = args[1]
                state = {"LOGGED_IN": [self.hostname]} if client in self.logged_in else {}
                return 200, {"alias": "", "state": state, "ip_address": []}
            if route == "targetinfo":
                return 200, {"num_sessions": len(self.logged_in)}
            return 404, {"message": f"no route {path}"}
        if route == "config" and method == "PUT":
            self.config = json.loads(form["config"])
            return ok
        if route == "target":
            iqn = args[0]
            if method == "PUT" and form.get("mode") == "reconfigure":
                cfg["targets"][iqn].setdefault("controls", {}).update(json.loads(form["controls"]))
            elif method == "PUT":
                cfg["targets"][iqn] = {
                    "acl_enabled": True,
                    "auth": {
                        "username": "",
                        "password": "",
                        "mutual_username": "",
                        "mutual_password": "",
                    },
                    "clients": {},
                    "controls": {},
                    "disks": {},
                    "groups": {},
                    "portals": {},
                }
            else:
                del cfg["targets"][iqn]
            return ok
        if route == "gateway":
            iqn, gw = args
            target = cfg["targets"][iqn]
            if method == "PUT":
                ips = form["ip_address"].split(",")
                target["portals"][gw] = {
                    "portal_ip_addresses": ips,
                    "gateway_ip_list": ips,
                    "inactive_portal_ips": [],
                    "tpg": len(target["portals"]) + 1,
                }
                cfg["gateways"].setdefault(
                    gw, {"active_luns": 0, "api_endpoint": f"http://127.0.0.1:{self.port}"}
                )
            else:
                del target["portals"][gw]
            return ok
        if route == "disk":
            key = "/".join(args)
            if method == "DELETE":
                del cfg["disks"][key]
            elif form.get("mode") == "create":
                if key in cfg["disks"]:
                    return 400, {"message": f"disk {key} already exists"}
                cfg["disks"][key] = {
                    "pool": args[0],
                    "image": args[1],
                    "backstore": form.get("backstore", "file"),
                    "size": parse_size(form.get("size", "1G")),
                    "wwn": "6b8e3c3e-0000-4000-8000-000000000001",
                    "owner": "",
                    "controls": {},
                }
            elif form.get("mode") == "resize":
                cfg["disks"][key]["size"] = parse_size(form["size"])
            elif form.get("mode") == "reconfigure":
                cfg["disks"][key]["controls"].update(json.loads(form["controls"]))
            return ok
        if route == "targetlun":
            target = cfg["targets"][args[0]]
            key = form["disk"]
            if method == "PUT":
                used = {d["lun_id"] for d in target["disks"].values()}
                lun = int(form["lun_id"]) if "lun_id" in form else min(set(range(256)) - used)
                target["disks"][key] = {"lun_id": lun}
                owner = sorted(target["portals"])[0] if target["portals"] else ""
                cfg["disks"][key]["owner"] = owner
            else:
                del target["disks"][key]
            return ok
        if route == "client":
            target = cfg["targets"][args[0]]
            if method == "PUT":
                target["clients"][args[1]] = {
                    "auth": {
                        "username": "",
                        "password": "",
                        "mutual_username": "",
                        "mutual_password": "",
                    },
                    "group_name": "",
                    "luns": {},
                }
            else:
                del target["clients"][args[1]]
            return ok
        if route == "clientauth":
            client = cfg["targets"][args[0]]["clients"][args[1]]
            client["auth"] = {
                k: form.get(k, "")
                for k in ("username", "password", "mutual_username", "mutual_password")
            }
            return ok
        if route == "clientlun":
            target = cfg["targets"][args[0]]
            client = target["clients"][args[1]]
            if method == "PUT":
                client["luns"][form["disk"]] = {"lun_id": target["disks"][form["disk"]]["lun_id"]}
            else:
                del client["luns"][form["disk"]]
            return ok
        if route == "discoveryauth":
            cfg["discovery_auth"].update(
                {
                    k: form.get(k, "")
                    for k in ("username", "password", "mutual_username", "mutual_password")
                }
            )
            return ok
        if route == "targetauth":
            target = cfg["targets"][args[0]]
            if "action" in form:
                target["acl_enabled"] = form["action"] == "enable_acl"
            else:
                target["auth"] = {
                    k: form.get(k, "")
                    for k in ("username", "password", "mutual_username", "mutual_password")
                }
            return ok
        if route == "hostgroup":
            target = cfg["targets"][args[0]]
            name = args[1]
            if method == "DELETE":
                del target["groups"][name]
            elif "action" not in form:
                target["groups"][name] = {"members": [], "disks": {}}
            else:
                group = target["groups"][name]
                for member in filter(None, form.get("members", "").split(",")):
                    if form["action"] == "add":
                        group["members"].append(member)
                        target["clients"][member]["group_name"] = name
                    else:
                        group["members"].remove(member)
                        target["clients"][member]["group_name"] = ""
                for disk in filter(None, form.get("disks", "").split(",")):
                    if form["action"] == "add":
                        group["disks"][disk] = {"lun_id": target["disks"][disk]["lun_id"]}
                    else:
                        del group["disks"][disk]
            return ok
        if route == "disksnap":
            return ok
        return 404, {"message": f"no route {method} {path}"}
