"""The gwcli object tree (configshell-fb nodes).

::

    /                                   export | import | info | refresh
      cluster                           [Clusters: 1]
        <name>                          info
          pools                         [Pools: N]
            <pool>                      [Commit: 100G, Disks: 1]     info
      disks                             [100G, Disks: 1]   create attach resize reconfigure info
                                                           detach delete snapshot
        <pool>                          [rbd (100G)]
          <image>                       [rbd/disk_1 (Online, 100G)]  resize reconfigure snapshot info
      iscsi-targets  (alias iscsi-target)  [DiscoveryAuth: None, Targets: 1]
                                                           create delete clearconfig discovery_auth
        <target iqn>                    [Auth: None, Gateways: 2]    auth reconfigure info
          disks                         [Disks: 1]         add delete
            <pool/image>                [Owner: gw1, Lun: 0]         info
          gateways                      [Up: 2/2, Portals: 2]        create delete info refresh
            <gateway>                   [127.0.0.2 (UP)]             info refresh
          host-groups                   [Groups : 0]       create delete
            <group>                     [Hosts: 1, Disks: 1]         host disk info
          hosts                         [Auth: ACL_ENABLED, Hosts: 1]  create delete auth
            <client iqn>                [LOGGED-IN, Auth: CHAP, Disks: 1(100G)]  auth disk info
              lun <id>                  [rbd/disk_1(100G), Owner: gw1]  info

Every change is one or more REST calls (the same ones gwcli 3.5 makes), after which the tree
is rebuilt from ``GET /api/config``. Method docstrings are the ``help`` text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from configshell import ConfigNode, ExecutionError

from . import fmt
from .args import (
    ArgError,
    Chap,
    check_gateway_name,
    check_snapshot_name,
    normalize_disk,
    normalize_iqn,
    normalize_size,
    parse_chap,
    parse_disk_spec,
    parse_flag,
    parse_ip_list,
    parse_lun_id,
)
from .client import APIError
from .context import Context

Json = dict[str, Any]
T = TypeVar("T")
_GROUP_RE = re.compile(r"[\w@\-]{1,32}")
AUTO_BOOKMARKS = ("gateways", "hosts", "host-groups")


def _q(part: str) -> str:
    return quote(part, safe=":@_-.~")


def _disk_path(key: str) -> str:
    pool, _, image = key.partition("/")
    return f"{_q(pool)}/{_q(image)}"


def completions(choices: Iterable[str], text: str) -> list[str]:
    """configshell convention: the candidates starting with ``text``; a lone one gets a space."""
    found = sorted({c for c in choices if c.startswith(text)})
    if len(found) == 1:
        return [found[0] + " "]
    return found


class ApplyProblems:
    """The gateways that did not apply a change: ``pending`` (will) and ``failed``."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.failed: list[str] = []


def apply_problems(reply: Mapping[str, Any]) -> ApplyProblems:
    """Read iscsigw's ``gateways: {name: {state, reason|error}}`` from a change reply."""
    out = ApplyProblems()
    gateways = reply.get("gateways")
    if not isinstance(gateways, dict):
        return out
    for name, info in sorted(gateways.items()):
        if not isinstance(info, dict):
            continue
        state = info.get("state")
        if state == "pending":
            out.pending.append(f"{name}: not applied yet: {info.get('reason') or 'unreachable'}")
        elif state == "failed":
            out.failed.append(f"{name} failed to apply it: {info.get('error') or 'unknown error'}")
    return out


def _unique_child(matches: list[Any], name: str, where: str) -> Any:
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"No such path {where.rstrip('/')}/{name}")


class GwNode(ConfigNode):  # type: ignore[misc]
    """Common behaviour: context access, aliases, tolerant path lookup, ``goto``."""

    aliases: dict[str, str] = {}

    def __init__(self, name: str, parent: GwNode) -> None:
        super().__init__(name, parent)

    @property
    def ctx(self) -> Context:
        root = self.get_root()
        ctx: Context = root.context
        return ctx

    # -- lookup --------------------------------------------------------------------------------

    def get_child(self, name: str) -> Any:
        """A child by name; also by alias, case-insensitively (IQNs) and ``pool.image``."""
        for child in self.children:
            if child.name == name:
                return child
        alias = self.aliases.get(name)
        if alias is not None:
            return super().get_child(alias)
        low = name.lower()
        matches = [c for c in self.children if c.name.lower() == low]
        if not matches and "." in name:
            slash = name.replace(".", "/", 1)
            matches = [c for c in self.children if c.name == slash]
        if not matches and low.startswith("lun") and low[3:].lstrip(" _").isdigit():
            lun = f"lun {int(low[3:].lstrip(' _'))}"
            matches = [c for c in self.children if c.name == lun]
        return _unique_child(matches, name, self.path)

    def get_node(self, path: str | None) -> Any:
        """configshell's lookup, plus children whose names hold a ``/`` (``pool/image``)."""
        if path and not path.startswith(("/", "@")):
            for child in self.children:
                if "/" in child.name and (path == child.name or path.startswith(child.name + "/")):
                    rest = path[len(child.name) :].lstrip("/")
                    return child.get_node(rest) if rest else child
        return super().get_node(path)

    # -- helpers for commands -----------------------------------------------------------------

    def done(self, message: str = "ok") -> None:
        self.shell.con.display(message)

    def call(self, method: str, path: str, form: Mapping[str, object | None] | None = None) -> Json:
        """One API call; a failure becomes the shell error with the API's message."""
        try:
            return self.ctx.api.request(method, path, form)
        except APIError as exc:
            raise ExecutionError(str(exc))

    def change(
        self, method: str, path: str, form: Mapping[str, object | None] | None = None
    ) -> Json:
        """A change: call the API, then rebuild the tree from the new config.

        The API commits the change once and reports what each gateway did with it; a gateway
        that is down applies it when it is back (``pending``), which is shown as a warning.
        A gateway that failed to apply it makes the command fail (the change stays committed).
        """
        reply = self.call(method, path, form)
        root = self.get_root()
        root.reload()
        problems = apply_problems(reply)
        for line in problems.pending:
            self.warn(line)
        if problems.failed:
            raise ExecutionError(
                f"committed at epoch {reply.get('epoch', '?')}, but " + "; ".join(problems.failed)
            )
        return reply

    def node_at(self, path: str) -> Any:
        """The node at ``path`` in the rebuilt tree (or the nearest existing ancestor)."""
        root = self.get_root()
        while True:
            try:
                return root.get_node(path)
            except ValueError:
                if path in ("", "/"):
                    return root
                path = path.rsplit("/", 1)[0] or "/"

    def ui_command_goto(self, shortcut: str = "/") -> Any:
        """
        Go to a bookmark (``bookmarks show`` lists them) or a path.

        gwcli keeps the bookmarks ``gateways``, ``hosts`` and ``host-groups`` pointing at the
        last target loaded, so ``goto hosts`` is a short way there.

        SEE ALSO
        ========
        bookmarks cd
        """
        marks = self.shell.prefs["bookmarks"] or {}
        if shortcut in marks:
            return self.ui_command_cd(marks[shortcut])
        if shortcut.startswith("/"):
            return self.ui_command_cd(shortcut)
        raise ExecutionError(f"'{shortcut}' is not a bookmark; 'bookmarks show' lists them")

    def ui_complete_goto(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param != "shortcut":
            return []
        return completions((self.shell.prefs["bookmarks"] or {}).keys(), text)

    def show(self, text: str) -> None:
        self.shell.con.display(text)

    def warn(self, text: str) -> None:
        """A warning on stderr (configshell's log.warning writes to stdout)."""
        con = self.shell.con
        con.display(con.render_text(text, "yellow"), error=True)


def _run(fn: Callable[[], T]) -> T:
    """Turn argument errors into shell errors."""
    try:
        return fn()
    except ArgError as exc:
        raise ExecutionError(str(exc))


# =================================================================================================
# root
# =================================================================================================


class Root(GwNode):
    """``/``: the whole gateway group as its API reports it."""

    aliases = {"iscsi-target": "iscsi-targets", "iscsi_targets": "iscsi-targets"}

    def __init__(self, shell: Any, context: Context) -> None:
        ConfigNode.__init__(self, "/", shell=shell)
        self.context = context

    def summary(self) -> tuple[str, bool | None]:
        return "", None

    def reload(self) -> None:
        """Fetch the config and rebuild every node below ``/``."""
        try:
            self.context.load()
        except APIError as exc:
            raise ExecutionError(f"Unable to read the configuration from the API: {exc}")
        self.rebuild()

    def rebuild(self) -> None:
        for child in list(self.children):
            self.remove_child(child)
        Cluster(self)
        Disks(self)
        Targets(self)
        self._auto_bookmarks()

    def _auto_bookmarks(self) -> None:
        targets = sorted(self.context.targets)
        if not targets:
            return
        marks = dict(self.shell.prefs["bookmarks"] or {})
        base = f"/iscsi-targets/{targets[-1]}"
        wanted = {name: f"{base}/{name}" for name in AUTO_BOOKMARKS}
        if any(marks.get(k) != v for k, v in wanted.items()):
            marks.update(wanted)
            self.shell.prefs["bookmarks"] = marks
            try:
                self.shell.prefs.save()
            except OSError:
                pass

    def ui_command_refresh(self) -> None:
        """
        Read the configuration again from the API and rebuild the tree.

        Gateway states are pinged again too.

        SEE ALSO
        ========
        ls info
        """
        self.context.forget_pings()
        self.reload()
        self.done()

    def ui_command_info(self) -> None:
        """
        Show how this shell reaches the API and what the API reports about itself.

        SEE ALSO
        ========
        export refresh
        """
        ctx = self.context
        ep = ctx.api.endpoint
        settings = ctx.settings()
        pairs: list[tuple[str, object]] = [
            ("API endpoint", ep.describe()),
            ("HTTP mode", ep.scheme),
            ("Port", ep.port),
            ("User", ep.user),
            ("Settings from", ep.source),
            ("Gateway", ctx.hostname() or "unknown"),
            ("API version", settings.get("api_version", "unknown")),
            ("Backstores", settings.get("backstores") or []),
            (
                "Minimum gateways",
                (settings.get("config") or {}).get("minimum_gateways")
                or settings.get("minimum_gateways", "unknown"),
            ),
        ]
        if ctx.cfg is not None:
            pairs.append(("Trusted IPs", ctx.cfg.get("trusted_ip_list") or "-"))
        self.show(fmt.info_lines(pairs))

    def ui_command_export(self, mode: str = "copy", file: str | None = None) -> None:
        """
        Print the whole configuration as JSON (as ``GET /api/config`` returns it).

        mode=copy is the only mode (gwcli 3.5 spelling). With file=PATH the JSON is written to
        PATH instead of the screen; ``import file=PATH`` reads it back.

        SEE ALSO
        ========
        import info
        """
        if mode != "copy":
            raise ExecutionError("export supports mode=copy only")
        try:
            config = self.context.api.get("/api/config", query={"decrypt_passwords": "true"})
        except APIError as exc:
            raise ExecutionError(str(exc))
        text = fmt.export_text(config)
        if file:
            try:
                Path(file).expanduser().write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                raise ExecutionError(f"cannot write {file}: {exc.strerror or exc}")
            self.done(f"configuration written to {file}")
        else:
            self.show(text)

    def ui_command_import(self, file: str, confirm: str | None = None) -> None:
        """
        Replace the whole configuration with a JSON document (``PUT /api/config``).

        The file is what ``export file=PATH`` wrote, or a ceph-iscsi ``gateway.conf``
        (version 11). The API validates the document before anything is applied; every
        gateway then moves to it. When targets or disks already exist, confirm=true is
        required because they are replaced.

        SEE ALSO
        ========
        export
        """
        try:
            text = Path(file).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ExecutionError(f"cannot read {file}: {exc.strerror or exc}")
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ExecutionError(f"{file} is not JSON: {exc}")
        if not isinstance(doc, dict):
            raise ExecutionError(f"{file}: the configuration must be a JSON object")
        ctx = self.context
        if (ctx.targets or ctx.disks) and not _run(lambda: parse_flag(confirm, "confirm")):
            raise ExecutionError(
                "the current configuration has targets or disks; add confirm=true to replace it"
            )
        self.change("PUT", "/api/config", {"config": json.dumps(doc)})
        self.done()


# =================================================================================================
# /cluster
# =================================================================================================


class Cluster(GwNode):
    """``/cluster``: where the disks live."""

    def __init__(self, parent: GwNode) -> None:
        super().__init__("cluster", parent)
        ClusterName(self, self.cluster_name())

    def cluster_name(self) -> str:
        ctx = self.ctx
        name = ctx.settings().get("cluster_name")
        if not name and ctx.cfg is not None:
            name = ctx.cfg.get("cluster_name")
        return str(name or "ceph")

    def summary(self) -> tuple[str, bool | None]:
        return f"Clusters: {len(self.children)}", None

    def ui_command_refresh(self) -> None:
        """
        Read the configuration and settings again from the API.

        SEE ALSO
        ========
        ls info
        """
        self.ctx._settings = None
        self.get_root().reload()
        self.done()


class ClusterName(GwNode):
    """``/cluster/<name>``: the storage behind the gateways."""

    def __init__(self, parent: GwNode, name: str) -> None:
        super().__init__(name, parent)
        Pools(self)

    def backstores(self) -> list[str]:
        used = {str(d.get("backstore", "")) for d in self.ctx.disks.values() if d.get("backstore")}
        offered = self.ctx.settings().get("backstores") or []
        return sorted(used | {str(b) for b in offered})

    def summary(self) -> tuple[str, bool | None]:
        default = self.ctx.settings().get("default_backstore")
        if not default:
            used = self.backstores()
            default = ", ".join(used) if used else "unknown"
        return f"Backstore: {default}, Disks: {len(self.ctx.disks)}", None

    def ui_command_info(self) -> None:
        """
        Show the cluster's name, the backstores in use and the pools with their disks.

        With the file backend a pool is a folder under the gateway's data directory and an
        image is a sparse file in it.

        SEE ALSO
        ========
        ls /disks
        """
        ctx = self.ctx
        pools: dict[str, list[str]] = {}
        for key in ctx.disks:
            pool, _, image = key.partition("/")
            pools.setdefault(pool, []).append(image)
        pairs: list[tuple[str, object]] = [
            ("Name", self.name),
            ("Backstores", self.backstores()),
            ("Pools", sorted(pools)),
            ("Disks", len(ctx.disks)),
            ("Committed", fmt.human_size(sum(ctx.disk_size(k) for k in ctx.disks))),
        ]
        self.show(fmt.info_lines(pairs))


def _pool_stats(ctx: Context, pool: str) -> Json:
    """Capacity facts the API's settings may carry for a pool (``pools: {name: {...}}``)."""
    pools = ctx.settings().get("pools")
    if isinstance(pools, dict) and isinstance(pools.get(pool), dict):
        return dict(pools[pool])
    return {}


def _pool_names(ctx: Context) -> list[str]:
    names = {key.partition("/")[0] for key in ctx.disks}
    pools = ctx.settings().get("pools")
    if isinstance(pools, dict | list):
        names |= {str(p) for p in pools}
    return sorted(names)


class Pools(GwNode):
    """``/cluster/<name>/pools``."""

    def __init__(self, parent: GwNode) -> None:
        super().__init__("pools", parent)
        for name in _pool_names(self.ctx):
            Pool(self, name)

    def summary(self) -> tuple[str, bool | None]:
        return f"Pools: {len(self.children)}", None


class Pool(GwNode):
    """A pool (with the file backend: a folder of disk images)."""

    def __init__(self, parent: GwNode, name: str) -> None:
        super().__init__(name, parent)

    def _keys(self) -> list[str]:
        return sorted(k for k in self.ctx.disks if k.partition("/")[0] == self.name)

    def summary(self) -> tuple[str, bool | None]:
        ctx = self.ctx
        commit = sum(ctx.disk_size(k) for k in self._keys())
        stats = _pool_stats(ctx, self.name)
        capacity = fmt.to_bytes(stats.get("max_avail") or stats.get("capacity"))
        text = f"Commit: {fmt.human_size(commit)}"
        if capacity:
            text += f"/{fmt.human_size(capacity)} ({commit * 100 // capacity}%)"
        if "used" in stats:
            text += f", Used: {fmt.human_size(fmt.to_bytes(stats['used']))}"
        return f"{text}, Disks: {len(self._keys())}", None

    def ui_command_info(self) -> None:
        """
        Show the pool's disks and how much space they commit.

        SEE ALSO
        ========
        ls /disks
        """
        ctx = self.ctx
        keys = self._keys()
        pairs: list[tuple[str, object]] = [
            ("Pool", self.name),
            ("Disks", [f"{k} ({fmt.human_size(ctx.disk_size(k))})" for k in keys]),
            ("Committed", fmt.human_size(sum(ctx.disk_size(k) for k in keys))),
        ]
        stats = _pool_stats(ctx, self.name)
        if stats:
            pairs.append(("Stats", stats))
        self.show(fmt.info_lines(pairs))


# =================================================================================================
# /disks
# =================================================================================================


def _controls_form(attribute: str, value: str | None) -> str:
    return json.dumps({attribute: "" if value is None else str(value)})


class DiskCommands(GwNode):
    """The disk operations shared by ``/disks`` (with a disk argument) and ``/disks/<p>/<i>``."""

    def _known(self, key: str) -> Json:
        disk = self.ctx.disks.get(key)
        if disk is None:
            raise ExecutionError(f"disk {key} does not exist (see 'ls /disks')")
        return disk

    def _owner(self, key: str) -> str | None:
        owner = (self.ctx.disks.get(key) or {}).get("owner")
        return str(owner) if owner else (self.ctx.hostname() or None)

    def do_resize(self, key: str, size: str | None) -> None:
        self._known(key)
        size_text = _run(lambda: normalize_size(size))
        pool = key.partition("/")[0]
        self.change(
            "PUT",
            f"/api/disk/{_disk_path(key)}",
            {"pool": pool, "size": size_text, "owner": self._owner(key), "mode": "resize"},
        )
        self.done()

    def do_reconfigure(self, key: str, attribute: str | None, value: str | None) -> None:
        self._known(key)
        if not attribute:
            raise ExecutionError("give the attribute to change, e.g. max_data_area_mb 16")
        pool = key.partition("/")[0]
        self.change(
            "PUT",
            f"/api/disk/{_disk_path(key)}",
            {
                "pool": pool,
                "owner": self._owner(key),
                "controls": _controls_form(attribute, value),
                "mode": "reconfigure",
            },
        )
        self.done()

    def do_info(self, key: str) -> None:
        disk = self._known(key)
        detail = self.ctx.disk_detail(key)
        merged = dict(disk)
        merged.update(detail)
        state = self.ctx.disk_state(key)
        pairs: list[tuple[str, object]] = [
            ("Disk", key),
            ("Image", merged.get("image", key.partition("/")[2])),
            ("Pool", merged.get("pool", key.partition("/")[0])),
            ("Backstore", merged.get("backstore", "")),
            ("Backstore Object Name", merged.get("backstore_object_name", "")),
            ("Size", fmt.human_size(self.ctx.disk_size(key))),
            ("WWN", merged.get("wwn", "")),
            ("Owner", merged.get("owner", "") or "-"),
            ("State", state),
            ("Target", self.ctx.target_of_disk(key) or "-"),
        ]
        status = merged.get("status")
        if isinstance(status, dict) and status.get("lock_owner"):
            pairs.append(("Lock Owner", status["lock_owner"]))
        if merged.get("snapshots"):
            pairs.append(("Snapshots", merged["snapshots"]))
        pairs.append(("Control Values", merged.get("controls") or {}))
        self.show(fmt.info_lines(pairs))

    def do_snapshot(self, key: str, action: str | None, name: str | None) -> None:
        self._known(key)
        snap = _run(lambda: check_snapshot_name(name))
        path = f"/api/disksnap/{_disk_path(key)}/{_q(snap)}"
        if action in ("create", "rollback"):
            self.change("PUT", path, {"mode": action})
        elif action == "delete":
            self.change("DELETE", path)
        else:
            raise ExecutionError("snapshot action must be create, delete or rollback")
        self.done()

    def complete_disk_names(self, text: str) -> list[str]:
        return completions(self.ctx.disks.keys(), text)


class Disks(DiskCommands):
    """``/disks``: every disk the gateways can export, by pool."""

    def __init__(self, parent: GwNode) -> None:
        super().__init__("disks", parent)
        pools: dict[str, list[str]] = {}
        for key in self.ctx.disks:
            pool, _, image = key.partition("/")
            pools.setdefault(pool, []).append(image)
        for pool, images in sorted(pools.items()):
            DiskPool(self, pool, images)

    def summary(self) -> tuple[str, bool | None]:
        ctx = self.ctx
        return fmt.disks_summary(ctx.disk_size(k) for k in ctx.disks), None

    def _create(
        self,
        pool: str | None,
        image: str | None,
        size: str | None,
        count: str | None,
        backstore: str | None,
        wwn: str | None,
        create_image: bool,
    ) -> str:
        spec = _run(lambda: parse_disk_spec(pool, image, size, count, need_size=create_image))
        if spec.disk in self.ctx.disks:
            raise ExecutionError(f"disk {spec.disk} already exists")
        form: dict[str, object | None] = {
            "pool": spec.pool,
            "owner": self.ctx.hostname() or None,
            "count": str(spec.count),
            "mode": "create",
            "create_image": "true" if create_image else "false",
            "size": spec.size,
            "backstore": backstore or None,
            "wwn": wwn or None,
        }
        self.change("PUT", f"/api/disk/{_disk_path(spec.disk)}", form)
        return spec.disk

    def ui_command_create(
        self,
        pool: str | None = None,
        image: str | None = None,
        size: str | None = None,
        count: str | None = None,
        backstore: str | None = None,
        wwn: str | None = None,
    ) -> None:
        """
        Create a disk: a new image of the given size (a sparse file with the file backend).

        create pool=<pool> image=<image> size=<N>[M|G|T] [count=1..10] [backstore=…] [wwn=…]
        create <pool>/<image> <size> [count]

        pool ....... with the file backend, a folder under the gateway's data directory
                     (created when missing); with Ceph, an RBD pool
        image ...... letters, digits and . _ -
        size ....... e.g. 100G; units M, G, T (powers of 1024)
        count ...... create <image>1 … <image>N at once
        backstore .. file, rbd or memory (the gateway's default when not given)
        wwn ........ the unit serial to report (a UUID), default: generated

        e.g. create pool=rbd image=disk_1 size=100G
             create rbd/disk_1 100G

        SEE ALSO
        ========
        attach resize delete /iscsi-targets
        """
        self._create(pool, image, size, count, backstore, wwn, create_image=True)
        self.done()

    def ui_complete_create(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "pool":
            return completions(_pool_names(self.ctx), text)
        if current_param == "backstore":
            offered = self.ctx.settings().get("backstores") or ["file", "rbd", "memory"]
            return completions([str(b) for b in offered], text)
        return []

    def ui_command_attach(
        self,
        pool: str | None = None,
        image: str | None = None,
        backstore: str | None = None,
        wwn: str | None = None,
    ) -> None:
        """
        Add an existing image (file or RBD image) to the gateways' disks without creating it.

        attach pool=<pool> image=<image> [backstore=…] [wwn=…]
        attach <pool>/<image>

        SEE ALSO
        ========
        create detach
        """
        self._create(pool, image, None, None, backstore, wwn, create_image=False)
        self.done()

    def _delete(self, disk: str | None, preserve: bool) -> None:
        key = _run(lambda: normalize_disk(disk))
        self._known(key)
        owner = self.ctx.target_of_disk(key)
        if owner:
            raise ExecutionError(
                f"disk {key} is mapped to target {owner}; remove it there first "
                f"(/iscsi-targets/{owner}/disks delete {key})"
            )
        self.change(
            "DELETE",
            f"/api/disk/{_disk_path(key)}",
            {
                "purge_host": self.ctx.hostname() or None,
                "preserve_image": "true" if preserve else "false",
            },
        )
        self.done()

    def ui_command_delete(self, image_id: str) -> None:
        """
        Delete a disk and its image (the file, or the RBD image): the data is gone.

        delete <pool>/<image>

        The disk must not be mapped to a target.

        SEE ALSO
        ========
        detach create
        """
        self._delete(image_id, preserve=False)

    def ui_command_detach(self, image_id: str) -> None:
        """
        Remove a disk from the gateways but keep its image (the file or RBD image stays).

        detach <pool>/<image>

        SEE ALSO
        ========
        attach delete
        """
        self._delete(image_id, preserve=True)

    def ui_command_resize(self, image_id: str, size: str) -> None:
        """
        Grow a disk to a new size; initiators see a capacity-changed unit attention.

        resize <pool>/<image> <size>      e.g. resize rbd/disk_1 200G

        SEE ALSO
        ========
        info create
        """
        self.do_resize(_run(lambda: normalize_disk(image_id)), size)

    def ui_command_reconfigure(
        self, image_id: str, attribute: str, value: str | None = None
    ) -> None:
        """
        Change a per-disk control; an empty value restores the default.

        reconfigure <pool>/<image> <attribute> <value>

        attributes: max_data_area_mb (1-2048), hw_max_sectors (1-8192), osd_op_timeout
        (0-600), qfull_timeout (0-600).

        SEE ALSO
        ========
        info
        """
        self.do_reconfigure(_run(lambda: normalize_disk(image_id)), attribute, value)

    def ui_command_info(self, image_id: str) -> None:
        """
        Show a disk's details: size, backstore, WWN, owner, state, mapping and controls.

        info <pool>/<image>

        SEE ALSO
        ========
        ls
        """
        self.do_info(_run(lambda: normalize_disk(image_id)))

    def ui_command_snapshot(self, image_id: str, action: str, name: str) -> None:
        """
        Create, delete or roll back a snapshot of a disk (where the backend has them).

        snapshot <pool>/<image> create|delete|rollback <name>

        SEE ALSO
        ========
        info
        """
        self.do_snapshot(_run(lambda: normalize_disk(image_id)), action, name)

    def ui_complete_snapshot(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "action":
            return completions(("create", "delete", "rollback"), text)
        if current_param == "image_id":
            return self.complete_disk_names(text)
        return []

    def _complete_image_id(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "image_id":
            return self.complete_disk_names(text)
        if current_param == "attribute":
            return completions(_DISK_ATTRIBUTES, text)
        return []

    ui_complete_delete = _complete_image_id
    ui_complete_detach = _complete_image_id
    ui_complete_resize = _complete_image_id
    ui_complete_reconfigure = _complete_image_id
    ui_complete_info = _complete_image_id


_DISK_ATTRIBUTES = ("max_data_area_mb", "hw_max_sectors", "osd_op_timeout", "qfull_timeout")
_TARGET_ATTRIBUTES = (
    "dataout_timeout",
    "nopin_response_timeout",
    "nopin_timeout",
    "cmdsn_depth",
    "immediate_data",
    "initial_r2t",
    "max_outstanding_r2t",
    "first_burst_length",
    "max_burst_length",
    "max_recv_data_segment_length",
    "max_xmit_data_segment_length",
)


class DiskPool(GwNode):
    """``/disks/<pool>``."""

    def __init__(self, parent: GwNode, pool: str, images: list[str]) -> None:
        super().__init__(pool, parent)
        for image in sorted(images):
            Disk(self, pool, image)

    def summary(self) -> tuple[str, bool | None]:
        ctx = self.ctx
        return fmt.pool_summary(
            self.name, (ctx.disk_size(f"{self.name}/{c.name}") for c in self.children)
        ), None


class Disk(DiskCommands):
    """``/disks/<pool>/<image>``: one disk."""

    def __init__(self, parent: GwNode, pool: str, image: str) -> None:
        super().__init__(image, parent)
        self.key = f"{pool}/{image}"

    def summary(self) -> tuple[str, bool | None]:
        ctx = self.ctx
        return fmt.disk_summary(self.key, ctx.disk_state(self.key), ctx.disk_size(self.key))

    def ui_command_resize(self, size: str) -> None:
        """
        Grow this disk to a new size (e.g. resize 200G).

        SEE ALSO
        ========
        info
        """
        self.do_resize(self.key, size)

    def ui_command_reconfigure(self, attribute: str, value: str | None = None) -> None:
        """
        Change a control of this disk; an empty value restores the default.

        attributes: max_data_area_mb (1-2048), hw_max_sectors (1-8192), osd_op_timeout
        (0-600), qfull_timeout (0-600).

        SEE ALSO
        ========
        info
        """
        self.do_reconfigure(self.key, attribute, value)

    def ui_complete_reconfigure(self, parameters: Json, text: str, current_param: str) -> list[str]:
        return completions(_DISK_ATTRIBUTES, text) if current_param == "attribute" else []

    def ui_command_snapshot(self, action: str, name: str) -> None:
        """
        snapshot create|delete|rollback <name>

        Snapshots exist where the backend has them (RBD). A rollback needs the disk unused.

        SEE ALSO
        ========
        info
        """
        self.do_snapshot(self.key, action, name)

    def ui_complete_snapshot(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "action":
            return completions(("create", "delete", "rollback"), text)
        return []

    def ui_command_info(self) -> None:
        """
        Show this disk's details: size, backstore, WWN, owner, state, mapping and controls.

        SEE ALSO
        ========
        ls
        """
        self.do_info(self.key)


# =================================================================================================
# /iscsi-targets
# =================================================================================================


class Targets(GwNode):
    """``/iscsi-targets``: the iSCSI targets and discovery authentication."""

    def __init__(self, parent: GwNode) -> None:
        super().__init__("iscsi-targets", parent)
        for iqn in sorted(self.ctx.targets):
            Target(self, iqn)

    def summary(self) -> tuple[str, bool | None]:
        ctx = self.ctx
        return fmt.targets_summary(ctx.config.get("discovery_auth"), len(ctx.targets)), None

    def ui_command_create(self, target_iqn: str) -> None:
        """
        Create an iSCSI target.

        create <target_iqn>      e.g. create iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw

        Then add its gateways (portals), disks and hosts below it.

        SEE ALSO
        ========
        delete gateways hosts
        """
        iqn = _run(lambda: normalize_iqn(target_iqn, "target IQN"))
        if iqn in self.ctx.targets:
            raise ExecutionError(f"target {iqn} already exists")
        self.change("PUT", f"/api/target/{_q(iqn)}")
        self.done()

    def ui_command_delete(self, target_iqn: str) -> None:
        """
        Delete an iSCSI target (it must have no disks or hosts left).

        delete <target_iqn>

        SEE ALSO
        ========
        create clearconfig
        """
        iqn = _run(lambda: normalize_iqn(target_iqn, "target IQN"))
        if iqn not in self.ctx.targets:
            raise ExecutionError(f"target {iqn} does not exist")
        self.change("DELETE", f"/api/target/{_q(iqn)}")
        self.done()

    def ui_complete_delete(self, parameters: Json, text: str, current_param: str) -> list[str]:
        return completions(self.ctx.targets, text) if current_param == "target_iqn" else []

    def ui_command_clearconfig(self, confirm: str | None = None) -> None:
        """
        Delete every target (the disks in /disks stay).

        clearconfig confirm=true

        Refused while a target still has hosts or disks: remove those first.

        SEE ALSO
        ========
        delete
        """
        if not _run(lambda: parse_flag(confirm, "confirm")):
            raise ExecutionError("clearconfig removes every target; add confirm=true")
        busy = [
            iqn
            for iqn, t in self.ctx.targets.items()
            if (t.get("clients") or {}) or (t.get("disks") or {})
        ]
        if busy:
            raise ExecutionError(
                "remove the hosts and disks of these targets first: " + ", ".join(sorted(busy))
            )
        for iqn in sorted(self.ctx.targets):
            self.call("DELETE", f"/api/target/{_q(iqn)}")
        self.get_root().reload()
        self.done()

    def ui_command_discovery_auth(
        self,
        chap: str | None = None,
        username: str | None = None,
        password: str | None = None,
        mutual_username: str | None = None,
        mutual_password: str | None = None,
        mutual_chap: str | None = None,
        chap_mutual: str | None = None,
    ) -> None:
        """
        Set or remove the CHAP credentials initiators need for discovery (SendTargets).

        discovery_auth username=<user> password=<pass> [mutual_username=<u> mutual_password=<p>]
        discovery_auth chap=<user>/<pass> [mutual_chap=<user>/<pass>]
        discovery_auth nochap

        username ... 8-64 characters: letters, digits and . : @ _ -
        password ... 12-16 characters: letters, digits and @ _ - /

        SEE ALSO
        ========
        auth
        """
        creds = _run(
            lambda: parse_chap(
                (),
                username,
                password,
                mutual_username,
                mutual_password,
                chap,
                mutual_chap or chap_mutual,
            )
        )
        if isinstance(creds, str):
            creds = Chap()
        self.change("PUT", "/api/discoveryauth", creds.form(send_empty_mutual=True))
        self.done()

    def ui_complete_discovery_auth(
        self, parameters: Json, text: str, current_param: str
    ) -> list[str]:
        return completions(["nochap"], text) if current_param == "chap" else []

    def ui_command_info(self) -> None:
        """
        Show discovery authentication and the targets.

        SEE ALSO
        ========
        discovery_auth ls
        """
        ctx = self.ctx
        da = ctx.config.get("discovery_auth") or {}
        self.show(
            fmt.info_lines(
                [
                    ("Discovery Auth", fmt.auth_mode(da)),
                    ("Username", da.get("username", "") or "-"),
                    ("Mutual Username", da.get("mutual_username", "") or "-"),
                    ("Targets", sorted(ctx.targets)),
                ]
            )
        )


def _auth_args(
    chap: str | None,
    username: str | None,
    password: str | None,
    mutual_username: str | None,
    mutual_password: str | None,
    mutual_chap: str | None,
) -> Chap | str:
    return _run(
        lambda: parse_chap(
            (), username, password, mutual_username, mutual_password, chap, mutual_chap
        )
    )


class Target(GwNode):
    """``/iscsi-targets/<iqn>``: one target."""

    def __init__(self, parent: GwNode, iqn: str) -> None:
        super().__init__(iqn, parent)
        self.iqn = iqn
        TargetDisks(self, iqn)
        Gateways(self, iqn)
        HostGroups(self, iqn)
        Hosts(self, iqn)

    def summary(self) -> tuple[str, bool | None]:
        return fmt.target_summary(self.ctx.target(self.iqn)), None

    def ui_command_auth(
        self,
        chap: str | None = None,
        username: str | None = None,
        password: str | None = None,
        mutual_username: str | None = None,
        mutual_password: str | None = None,
        mutual_chap: str | None = None,
    ) -> None:
        """
        Set or remove target-level CHAP (used by initiators without credentials of their own).

        auth username=<user> password=<pass> [mutual_username=<u> mutual_password=<p>]
        auth chap=<user>/<pass> [mutual_chap=<user>/<pass>]
        auth nochap

        username ... 8-64 characters: letters, digits and . : @ _ -
        password ... 12-16 characters: letters, digits and @ _ - /

        SEE ALSO
        ========
        hosts/ auth
        """
        creds = _auth_args(chap, username, password, mutual_username, mutual_password, mutual_chap)
        if isinstance(creds, str):
            creds = Chap()
        self.change("PUT", f"/api/targetauth/{_q(self.iqn)}", creds.form(send_empty_mutual=True))
        self.done()

    def ui_complete_auth(self, parameters: Json, text: str, current_param: str) -> list[str]:
        return completions(["nochap"], text) if current_param == "chap" else []

    def ui_command_reconfigure(self, attribute: str, value: str | None = None) -> None:
        """
        Change a target control; an empty value restores the default.

        reconfigure <attribute> <value>        e.g. reconfigure cmdsn_depth 64

        attributes: dataout_timeout, nopin_response_timeout, nopin_timeout, cmdsn_depth,
        immediate_data, initial_r2t, max_outstanding_r2t, first_burst_length,
        max_burst_length, max_recv_data_segment_length, max_xmit_data_segment_length.

        SEE ALSO
        ========
        info
        """
        self.change(
            "PUT",
            f"/api/target/{_q(self.iqn)}",
            {"mode": "reconfigure", "controls": _controls_form(attribute, value)},
        )
        self.done()

    def ui_complete_reconfigure(self, parameters: Json, text: str, current_param: str) -> list[str]:
        return completions(_TARGET_ATTRIBUTES, text) if current_param == "attribute" else []

    def ui_command_info(self) -> None:
        """
        Show the target: authentication, portals, disks, hosts, controls and sessions.

        SEE ALSO
        ========
        ls reconfigure
        """
        ctx = self.ctx
        t = ctx.target(self.iqn)
        portals = t.get("portals") or {}
        try:
            sessions: object = ctx.api.get(f"/api/targetinfo/{_q(self.iqn)}").get("num_sessions")
        except APIError:
            sessions = "unknown"
        pairs: list[tuple[str, object]] = [
            ("Target", self.iqn),
            ("Auth", fmt.auth_mode(t.get("auth"))),
            ("Username", (t.get("auth") or {}).get("username", "") or "-"),
            ("ACL", "enabled" if t.get("acl_enabled", True) else "disabled"),
            (
                "Portals",
                [
                    f"{gw}: {','.join(p.get('portal_ip_addresses') or [])}"
                    for gw, p in sorted(portals.items())
                ],
            ),
            ("Disks", sorted(t.get("disks") or {})),
            ("Hosts", sorted(t.get("clients") or {})),
            ("Sessions", sessions),
            ("Control Values", t.get("controls") or {}),
        ]
        self.show(fmt.info_lines(pairs))


# -- target disks ---------------------------------------------------------------------------------


class TargetDisks(GwNode):
    """``<target>/disks``: the disks (LUNs) this target exports."""

    def __init__(self, parent: GwNode, iqn: str) -> None:
        super().__init__("disks", parent)
        self.iqn = iqn
        for key in sorted(self.ctx.target(iqn).get("disks") or {}):
            TargetDisk(self, iqn, key)

    def summary(self) -> tuple[str, bool | None]:
        return f"Disks: {len(self.children)}", None

    def ui_command_add(self, disk: str, lun_id: str | None = None) -> None:
        """
        Export a disk from /disks through this target as a LUN.

        add <pool>/<image> [lun_id=N]        (2.x spelling pool.image works too)

        The gateway picks the lowest free LUN id unless lun_id is given, and the gateway with
        the fewest LUNs becomes the disk's owner (its path is active/optimized).

        SEE ALSO
        ========
        delete /disks hosts/
        """
        key = _run(lambda: normalize_disk(disk))
        lun = _run(lambda: parse_lun_id(lun_id))
        if key not in self.ctx.disks:
            raise ExecutionError(f"disk {key} does not exist; create it first in /disks")
        self.change(
            "PUT",
            f"/api/targetlun/{_q(self.iqn)}",
            {"disk": key, "lun_id": None if lun is None else str(lun)},
        )
        self.done()

    def ui_complete_add(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param != "disk":
            return []
        mapped = set(self.ctx.target(self.iqn).get("disks") or {})
        return completions((k for k in self.ctx.disks if k not in mapped), text)

    def ui_command_delete(self, disk: str) -> None:
        """
        Stop exporting a disk through this target (the disk stays in /disks).

        delete <pool>/<image>

        SEE ALSO
        ========
        add
        """
        key = _run(lambda: normalize_disk(disk))
        self.change("DELETE", f"/api/targetlun/{_q(self.iqn)}", {"disk": key})
        self.done()

    def ui_complete_delete(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param != "disk":
            return []
        return completions((self.ctx.target(self.iqn).get("disks") or {}), text)


class TargetDisk(GwNode):
    """``<target>/disks/<pool/image>``: one LUN (also reachable as ``pool.image``)."""

    def __init__(self, parent: GwNode, iqn: str, key: str) -> None:
        super().__init__(key, parent)
        self.iqn = iqn
        self.key = key

    def summary(self) -> tuple[str, bool | None]:
        ctx = self.ctx
        lun = ((ctx.target(self.iqn).get("disks") or {}).get(self.key) or {}).get("lun_id")
        owner = str((ctx.disks.get(self.key) or {}).get("owner") or "")
        return fmt.target_disk_summary(owner, lun), None

    def ui_command_info(self) -> None:
        """
        Show the disk behind this LUN.

        SEE ALSO
        ========
        /disks info
        """
        Disks.do_info(self.node_at("/disks"), self.key)


# -- gateways -------------------------------------------------------------------------------------


class Gateways(GwNode):
    """``<target>/gateways``: the gateways (one portal group each) serving this target."""

    def __init__(self, parent: GwNode, iqn: str) -> None:
        super().__init__("gateways", parent)
        self.iqn = iqn
        for name in sorted(self.ctx.target(iqn).get("portals") or {}):
            Gateway(self, iqn, name)

    def _portals(self) -> dict[str, Json]:
        return dict(self.ctx.target(self.iqn).get("portals") or {})

    def summary(self) -> tuple[str, bool | None]:
        portals = self._portals()
        states = self.ctx.gateway_states(portals)
        count = sum(len(p.get("portal_ip_addresses") or []) for p in portals.values())
        return fmt.gateways_summary(states, count)

    def ui_command_create(
        self,
        gateway_name: str,
        ip_addresses: str,
        nosync: str | None = None,
        skipchecks: str | None = None,
    ) -> None:
        """
        Add a gateway to this target: its name (as it calls itself, ``iscsigw serve --name``)
        and the portal address(es) initiators use to reach it.

        create <gateway_name> <ip>[,<ip>…] [nosync=true] [skipchecks=true]

        skipchecks=true skips the OS/package checks (ceph-iscsi); nosync=true adds the gateway
        without pushing the existing disks and hosts to it yet.

        e.g. create gw1 192.168.219.128 skipchecks=true

        SEE ALSO
        ========
        delete info
        """
        name = _run(lambda: check_gateway_name(gateway_name))
        ips = _run(lambda: parse_ip_list(ip_addresses))
        sync_off = _run(lambda: parse_flag(nosync, "nosync"))
        skip = _run(lambda: parse_flag(skipchecks, "skipchecks"))
        if name in self._portals():
            raise ExecutionError(f"gateway {name} is already defined for this target")
        if skip:
            self.show("OS version/package checks have been bypassed")
        self.change(
            "PUT",
            f"/api/gateway/{_q(self.iqn)}/{_q(name)}",
            {
                "ip_address": ",".join(ips),
                "nosync": "True" if sync_off else "False",
                "skipchecks": "true" if skip else "false",
            },
        )
        self.ctx.forget_pings()
        self.done()

    def ui_complete_create(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param in ("nosync", "skipchecks"):
            return completions(("true", "false"), text)
        return []

    def ui_command_delete(self, gateway_name: str, confirm: str | None = None) -> None:
        """
        Remove a gateway from this target.

        delete <gateway_name> [confirm=true]

        Removing the last gateway removes the target's disks, hosts and groups too, so it
        needs confirm=true; confirm=true also removes a gateway that cannot be reached.

        SEE ALSO
        ========
        create
        """
        portals = self._portals()
        if gateway_name not in portals:
            raise ExecutionError(f"gateway {gateway_name} is not defined for this target")
        confirmed = _run(lambda: parse_flag(confirm, "confirm"))
        if len(portals) == 1 and not confirmed:
            raise ExecutionError(
                f"{gateway_name} is the last gateway: deleting it removes the target's disks, "
                "hosts and groups; add confirm=true"
            )
        self.change(
            "DELETE",
            f"/api/gateway/{_q(self.iqn)}/{_q(gateway_name)}",
            {"force": "true" if confirmed else "false"},
        )
        self.ctx.forget_pings()
        self.done()

    def ui_complete_delete(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "gateway_name":
            return completions(self._portals(), text)
        if current_param == "confirm":
            return completions(("true",), text)
        return []

    def ui_command_info(self) -> None:
        """
        Show each gateway's portals and state.

        SEE ALSO
        ========
        refresh
        """
        portals = self._portals()
        states = self.ctx.gateway_states(portals)
        self.show(
            fmt.info_lines(
                (gw, f"{','.join(p.get('portal_ip_addresses') or [])} ({states[gw]})")
                for gw, p in sorted(portals.items())
            )
        )

    def ui_command_refresh(self) -> None:
        """
        Ping every gateway again.

        SEE ALSO
        ========
        ls info
        """
        self.ctx.forget_pings()
        self.ui_command_ls()


class Gateway(GwNode):
    """``<target>/gateways/<name>``: one gateway's portal group."""

    def __init__(self, parent: GwNode, iqn: str, name: str) -> None:
        super().__init__(name, parent)
        self.iqn = iqn

    def _portal(self) -> Json:
        return dict((self.ctx.target(self.iqn).get("portals") or {}).get(self.name) or {})

    def summary(self) -> tuple[str, bool | None]:
        state = self.ctx.gateway_states([self.name])[self.name]
        return fmt.gateway_summary(self._portal().get("portal_ip_addresses") or [], state)

    def ui_command_info(self) -> None:
        """
        Show this gateway's portal addresses, portal group tag and state.

        SEE ALSO
        ========
        refresh
        """
        portal = self._portal()
        state = self.ctx.gateway_states([self.name])[self.name]
        pairs: list[tuple[str, object]] = [
            ("Name", self.name),
            ("State", state),
            ("Portal IPs", portal.get("portal_ip_addresses") or []),
        ]
        for key in sorted(portal):
            if key != "portal_ip_addresses":
                pairs.append((key, portal[key]))
        self.show(fmt.info_lines(pairs))

    def ui_command_refresh(self) -> None:
        """
        Ping this gateway again.

        SEE ALSO
        ========
        info
        """
        self.ctx.forget_pings()
        self.ui_command_ls()


# -- host groups ----------------------------------------------------------------------------------


class HostGroups(GwNode):
    """``<target>/host-groups``: hosts that share the same LUNs."""

    def __init__(self, parent: GwNode, iqn: str) -> None:
        super().__init__("host-groups", parent)
        self.iqn = iqn
        for name in sorted(self.ctx.target(iqn).get("groups") or {}):
            HostGroup(self, iqn, name)

    def summary(self) -> tuple[str, bool | None]:
        return fmt.hostgroups_summary(len(self.children)), None

    def ui_command_create(self, group_name: str) -> Any:
        """
        Create a host group and go into it.

        create <group_name>       (1-32 letters, digits, _ @ -)

        A group gives all its hosts the same disks: add hosts with ``host add <iqn>`` and
        disks with ``disk add <pool>/<image>``.

        SEE ALSO
        ========
        delete
        """
        if not _GROUP_RE.fullmatch(group_name or ""):
            raise ExecutionError("a group name is 1-32 letters, digits, '_', '@' or '-'")
        self.change("PUT", f"/api/hostgroup/{_q(self.iqn)}/{_q(group_name)}")
        self.done()
        return self.node_at(f"{self.path}/{group_name}")

    def ui_command_delete(self, group_name: str) -> None:
        """
        Delete a host group (its hosts keep the disks they have).

        delete <group_name>

        SEE ALSO
        ========
        create
        """
        self.change("DELETE", f"/api/hostgroup/{_q(self.iqn)}/{_q(group_name)}")
        self.done()

    def ui_complete_delete(self, parameters: Json, text: str, current_param: str) -> list[str]:
        return completions((c.name for c in self.children), text)


class HostGroup(GwNode):
    """``<target>/host-groups/<name>``."""

    def __init__(self, parent: GwNode, iqn: str, name: str) -> None:
        super().__init__(name, parent)
        self.iqn = iqn
        group = self._group()
        for member in group.get("members") or []:
            GroupMember(self, str(member), "host")
        for key in group.get("disks") or {}:
            GroupMember(self, str(key), "disk")

    def _group(self) -> Json:
        return dict((self.ctx.target(self.iqn).get("groups") or {}).get(self.name) or {})

    def summary(self) -> tuple[str, bool | None]:
        return fmt.hostgroup_summary(self._group()), None

    def _update(self, action: str, field: str, value: str) -> None:
        if action not in ("add", "remove"):
            raise ExecutionError("the action is add or remove")
        self.change(
            "PUT",
            f"/api/hostgroup/{_q(self.iqn)}/{_q(self.name)}",
            {"action": action, field: value},
        )
        self.done()

    def ui_command_host(self, action: str, client_iqn: str) -> None:
        """
        host add|remove <client_iqn>

        A host can join a group only when it has no disks of its own and is in no other group.

        SEE ALSO
        ========
        disk
        """
        self._update(action, "members", _run(lambda: normalize_iqn(client_iqn, "client IQN")))

    def ui_complete_host(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "action":
            return completions(("add", "remove"), text)
        if current_param == "client_iqn":
            clients = self.ctx.target(self.iqn).get("clients") or {}
            return completions(clients, text)
        return []

    def ui_command_disk(self, action: str, disk: str) -> None:
        """
        disk add|remove <pool>/<image>

        The disk must be exported by this target (``<target>/disks add``).

        SEE ALSO
        ========
        host
        """
        self._update(action, "disks", _run(lambda: normalize_disk(disk)))

    def ui_complete_disk(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "action":
            return completions(("add", "remove"), text)
        if current_param == "disk":
            return completions((self.ctx.target(self.iqn).get("disks") or {}), text)
        return []

    def ui_command_info(self) -> None:
        """
        Show the group's hosts and disks.

        SEE ALSO
        ========
        host disk
        """
        group = self._group()
        self.show(
            fmt.info_lines(
                [
                    ("Group", self.name),
                    ("Hosts", list(group.get("members") or [])),
                    ("Disks", sorted(group.get("disks") or {})),
                ]
            )
        )


class GroupMember(GwNode):
    """A host or a disk listed in a host group."""

    def __init__(self, parent: GwNode, name: str, kind: str) -> None:
        super().__init__(name, parent)
        self.kind = kind

    def summary(self) -> tuple[str, bool | None]:
        return self.kind, None


# -- hosts ----------------------------------------------------------------------------------------


class Hosts(GwNode):
    """``<target>/hosts``: the initiators allowed to log in (ACLs) and their CHAP."""

    def __init__(self, parent: GwNode, iqn: str) -> None:
        super().__init__("hosts", parent)
        self.iqn = iqn
        for client in sorted(self.ctx.target(iqn).get("clients") or {}):
            Host(self, iqn, client)

    def summary(self) -> tuple[str, bool | None]:
        return fmt.hosts_summary(self.ctx.target(self.iqn))

    def ui_command_create(self, client_iqn: str) -> Any:
        """
        Allow an initiator to log in to this target, and go to it.

        create <client_iqn>         e.g. create iqn.1994-05.com.redhat:75c3d5efde0

        Then set its CHAP (``auth``) and give it disks (``disk add``).

        SEE ALSO
        ========
        delete auth
        """
        client = _run(lambda: normalize_iqn(client_iqn, "client IQN"))
        if client in (self.ctx.target(self.iqn).get("clients") or {}):
            raise ExecutionError(f"host {client} already exists")
        self.change("PUT", f"/api/client/{_q(self.iqn)}/{_q(client)}")
        self.done()
        return self.node_at(f"{self.path}/{client}")

    def ui_command_delete(self, client_iqn: str) -> None:
        """
        Remove an initiator's access (refused while it is logged in).

        delete <client_iqn>

        SEE ALSO
        ========
        create
        """
        client = _run(lambda: normalize_iqn(client_iqn, "client IQN"))
        self.change("DELETE", f"/api/client/{_q(self.iqn)}/{_q(client)}")
        self.done()

    def ui_complete_delete(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param != "client_iqn":
            return []
        return completions((self.ctx.target(self.iqn).get("clients") or {}), text)

    def ui_command_auth(self, action: str) -> None:
        """
        auth nochap | enable_acl | disable_acl

        nochap ....... remove CHAP from every host of this target
        enable_acl ... only the hosts listed here may log in (the default)
        disable_acl .. any initiator may log in (only while no hosts are defined)

        SEE ALSO
        ========
        <host> auth
        """
        if action == "nochap":
            clients = self.ctx.target(self.iqn).get("clients") or {}
            for client in sorted(clients):
                self.call(
                    "PUT",
                    f"/api/clientauth/{_q(self.iqn)}/{_q(client)}",
                    Chap().form(send_empty_mutual=True),
                )
            self.get_root().reload()
        elif action in ("enable_acl", "disable_acl"):
            self.change("PUT", f"/api/targetauth/{_q(self.iqn)}", {"action": action})
        else:
            raise ExecutionError("auth takes nochap, enable_acl or disable_acl")
        self.done()

    def ui_complete_auth(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "action":
            return completions(("nochap", "enable_acl", "disable_acl"), text)
        return []


class Host(GwNode):
    """``<target>/hosts/<client_iqn>``: one initiator."""

    def __init__(self, parent: GwNode, iqn: str, client: str) -> None:
        super().__init__(client, parent)
        self.iqn = iqn
        self.client = client
        for key, lun in sorted(self._luns().items(), key=lambda kv: kv[1]):
            HostLun(self, iqn, key, lun)

    def _entry(self) -> Json:
        return dict((self.ctx.target(self.iqn).get("clients") or {}).get(self.client) or {})

    def _luns(self) -> dict[str, int]:
        """The client's disks, its own and its group's, with their LUN ids."""
        entry = self._entry()
        target = self.ctx.target(self.iqn)
        luns: dict[str, int] = {}
        for key, value in (entry.get("luns") or {}).items():
            luns[key] = int((value or {}).get("lun_id", 0))
        group = entry.get("group_name")
        if group:
            gdisks = ((target.get("groups") or {}).get(group) or {}).get("disks") or {}
            tdisks = target.get("disks") or {}
            for key, value in gdisks.items():
                lun = (value or {}).get("lun_id", (tdisks.get(key) or {}).get("lun_id", 0))
                luns.setdefault(key, int(lun))
        return luns

    def summary(self) -> tuple[str, bool | None]:
        ctx = self.ctx
        entry = self._entry()
        sizes = [ctx.disk_size(k) for k in self._luns()]
        return fmt.host_summary(
            ctx.logged_in(self.iqn, self.client),
            entry.get("auth"),
            sizes,
            str(entry.get("group_name") or ""),
        )

    def ui_command_auth(
        self,
        chap: str | None = None,
        username: str | None = None,
        password: str | None = None,
        mutual_username: str | None = None,
        mutual_password: str | None = None,
        mutual_chap: str | None = None,
    ) -> None:
        """
        Set or remove this initiator's CHAP credentials.

        auth username=<user> password=<pass> [mutual_username=<u> mutual_password=<p>]
        auth chap=<user>/<pass> [mutual_chap=<user>/<pass>]
        auth nochap

        username ... 8-64 characters: letters, digits and . : @ _ -
                     (the initiator's IQN or the host's short name are good choices)
        password ... 12-16 characters: letters, digits and @ _ - /
        mutual_* ... the target's credentials toward the initiator (mutual CHAP)

        nochap removes CHAP for this initiator on every gateway.

        e.g. auth chap=iqn.1994-05.com.redhat:75c3d5efde0/admin@a_12a-bb

        SEE ALSO
        ========
        disk info
        """
        creds = _auth_args(chap, username, password, mutual_username, mutual_password, mutual_chap)
        form = Chap().form(send_empty_mutual=True) if isinstance(creds, str) else creds.form()
        self.change("PUT", f"/api/clientauth/{_q(self.iqn)}/{_q(self.client)}", form)
        self.done()

    def ui_complete_auth(self, parameters: Json, text: str, current_param: str) -> list[str]:
        return completions(["nochap"], text) if current_param == "chap" else []

    def ui_command_disk(
        self, action: str = "add", disk: str | None = None, size: str | None = None
    ) -> None:
        """
        Give this initiator a disk, or take it away.

        disk add <pool>/<image> [<size>]
        disk remove <pool>/<image>

        add: a disk missing from /disks is created first (with size) or attached (without);
        a disk not yet exported by this target is added to its disks first. The LUN id is
        the target's LUN id for the disk when free for this host.
        The 2.x spelling ``disk add rbd.disk_1`` works too.

        SEE ALSO
        ========
        auth /disks
        """
        key = _run(lambda: normalize_disk(disk))
        iqn, client = self.iqn, self.client
        if action == "add":
            ctx = self.ctx
            if key not in ctx.disks:
                disks = self.node_at("/disks")
                disks._create(key, None, size, None, None, None, create_image=size is not None)
            elif size is not None:
                raise ExecutionError(f"disk {key} exists already; leave out the size")
            if key not in (self.ctx.target(iqn).get("disks") or {}):
                owner = self.ctx.target_of_disk(key)
                if owner:
                    raise ExecutionError(f"disk {key} is exported by another target ({owner})")
                self.change("PUT", f"/api/targetlun/{_q(iqn)}", {"disk": key})
            self.change("PUT", f"/api/clientlun/{_q(iqn)}/{_q(client)}", {"disk": key})
        elif action == "remove":
            self.change("DELETE", f"/api/clientlun/{_q(iqn)}/{_q(client)}", {"disk": key})
        else:
            raise ExecutionError("disk takes add or remove")
        self.done()

    def ui_complete_disk(self, parameters: Json, text: str, current_param: str) -> list[str]:
        if current_param == "action":
            return completions(("add", "remove"), text)
        if current_param == "disk":
            if parameters.get("action") == "remove":
                return completions(self._luns(), text)
            return completions(self.ctx.disks, text)
        return []

    def ui_command_info(self) -> None:
        """
        Show the initiator: login state and addresses, CHAP, group and LUNs.

        SEE ALSO
        ========
        auth disk
        """
        ctx = self.ctx
        entry = self._entry()
        info = ctx.client_info(self.iqn, self.client)
        state = info.get("state") or {}
        logged = state.get("LOGGED_IN") if isinstance(state, dict) else None
        auth = entry.get("auth") or {}
        pairs: list[tuple[str, object]] = [
            ("Client Iqn", self.client),
            ("Alias", info.get("alias", "") or "-"),
            ("Logged In", list(logged) if logged else "no"),
            ("IP Address", list(info.get("ip_address") or [])),
            ("Auth", fmt.auth_mode(auth)),
            ("Username", auth.get("username", "") or "-"),
            ("Password", auth.get("password", "") or "-"),
            ("Mutual Username", auth.get("mutual_username", "") or "-"),
            ("Mutual Password", auth.get("mutual_password", "") or "-"),
            ("Group", entry.get("group_name") or "-"),
            (
                "LUNs",
                [
                    f"{lun}: {k} ({fmt.human_size(ctx.disk_size(k))})"
                    for k, lun in sorted(self._luns().items(), key=lambda kv: kv[1])
                ],
            ),
        ]
        self.show(fmt.info_lines(pairs))


class HostLun(GwNode):
    """``<host>/lun <id>`` (also reachable as ``lun<id>``): a disk this initiator sees."""

    def __init__(self, parent: GwNode, iqn: str, key: str, lun: int) -> None:
        super().__init__(f"lun {lun}", parent)
        self.iqn = iqn
        self.key = key
        self.lun = lun

    def summary(self) -> tuple[str, bool | None]:
        ctx = self.ctx
        owner = str((ctx.disks.get(self.key) or {}).get("owner") or "")
        return fmt.lun_summary(self.key, ctx.disk_size(self.key), owner), None

    def ui_command_info(self) -> None:
        """
        Show the disk behind this LUN.

        SEE ALSO
        ========
        /disks info
        """
        Disks.do_info(self.node_at("/disks"), self.key)
