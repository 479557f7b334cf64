"""What people type, turned into what the API takes.

Two generations of spellings meet in the field and both are accepted:

* ceph-iscsi 3.x (gwcli 3.5): ``/iscsi-targets``, ``pool/image``, ``auth username=U password=P
  [mutual_username=… mutual_password=…]``, ``/disks create pool=rbd image=disk_1 size=1G`` or
  ``/disks create rbd/disk_1 1G``;
* ceph-iscsi-cli 2.x (the seed walkthrough): ``/iscsi-target``, ``pool.image`` (``disk add
  rbd.disk_1``), ``auth chap=U/P [mutual_chap=U/P]`` and ``discovery_auth chap=U/P
  [chap_mutual=U/P]``.

Every function raises ``ArgError`` whose text says what was wrong and what is accepted; the
values are validated with the same rules the server applies (``iscsigw.config.names``), so a
typo is caught before any request is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...config.names import (
    normalize_iscsi_name,
    parse_size,
    split_disk_key,
    validate_chap,
    validate_gateway_name,
    validate_ip,
    validate_lun_id,
    validate_pool_or_image,
)
from ...errors import ConfigError

_SIZE_TEXT = re.compile(r"\s*(\d+)\s*([KMGTP]?)(?:I?B)?\s*", re.IGNORECASE)
_SNAP_RE = re.compile(r"[^/@\s]+")
CREATE_COUNT_MAX = 10


class ArgError(ValueError):
    """A command argument that cannot be used; the text is shown to the user."""


def _wrap(exc: ConfigError) -> ArgError:
    return ArgError(str(exc))


def normalize_disk(text: str | None, what: str = "disk") -> str:
    """``pool/image`` (3.x) or ``pool.image`` (2.x) → ``pool/image``, both parts validated.

    A name with a ``/`` is taken as written; without one, the first ``.`` separates the pool
    from the image (the way ceph-iscsi-cli 2.x wrote disk names).
    """
    if text is None or not str(text).strip():
        raise ArgError(f"{what}: give the disk as pool/image (e.g. rbd/disk_1)")
    raw = str(text).strip()
    if "/" not in raw:
        if "." not in raw:
            raise ArgError(f"{what} {raw!r} must be written pool/image (e.g. rbd/disk_1)")
        raw = raw.replace(".", "/", 1)
    try:
        pool, image = split_disk_key(raw)
    except ConfigError as exc:
        raise _wrap(exc)
    return f"{pool}/{image}"


def normalize_size(text: str | None, what: str = "size") -> str:
    """``100g`` → ``100G`` (gwcli 3.5 upper-cases); ``GB``/``GiB`` suffixes are accepted.

    A plain number is a byte count; zero is refused.
    """
    if text is None or not str(text).strip():
        raise ArgError(f"{what} is required, e.g. 10G (units K, M, G, T)")
    m = _SIZE_TEXT.fullmatch(str(text))
    if m is None:
        raise ArgError(
            f"{what} {text!r} is not understood; use a number followed by M, G or T, e.g. 100G"
        )
    out = f"{m.group(1)}{m.group(2).upper()}"
    try:
        if parse_size(out) == 0:
            raise ArgError(f"{what} must be larger than 0")
    except ConfigError as exc:
        raise _wrap(exc)
    return out


def size_bytes(text: str) -> int:
    return parse_size(normalize_size(text))


def _looks_like_size(text: str) -> bool:
    m = _SIZE_TEXT.fullmatch(text)
    return m is not None and bool(m.group(2))


@dataclass(frozen=True)
class DiskSpec:
    """The parsed arguments of ``/disks create|attach``."""

    disk: str
    size: str | None
    count: int

    @property
    def pool(self) -> str:
        return self.disk.split("/", 1)[0]

    @property
    def image(self) -> str:
        return self.disk.split("/", 1)[1]


def parse_disk_spec(
    pool: str | None,
    image: str | None,
    size: str | None,
    count: str | int | None,
    need_size: bool = True,
) -> DiskSpec:
    """Sort out ``create pool=P image=I size=S [count=N]`` and ``create P/I S [N]``.

    configshell fills parameters by position, so in ``create rbd/disk_1 1G 2`` the pool slot
    holds ``rbd/disk_1``, the image slot ``1G`` and the size slot ``2``; this undoes that.
    """
    if pool is None:
        raise ArgError("give the disk as pool=POOL image=IMAGE or as POOL/IMAGE")
    if "/" in pool or ("." in pool and (image is None or _looks_like_size(image))):
        # create P/I [S [N]] (or the 2.x P.I): the slots after the disk shift by one
        disk = normalize_disk(pool)
        if image is not None:
            if size is not None and count is None:
                count = size
            elif size is not None:
                raise ArgError(f"unexpected {image!r}: the size is given twice")
            size = image
    elif image is None:
        raise ArgError(f"give the image too: pool={pool} image=IMAGE, or {pool}/IMAGE")
    else:
        try:
            disk = (
                f"{validate_pool_or_image(pool, 'pool')}/{validate_pool_or_image(image, 'image')}"
            )
        except ConfigError as exc:
            raise _wrap(exc)
    if need_size:
        size_text: str | None = normalize_size(size)
    else:
        if size is not None:
            raise ArgError("attach takes no size: the image already exists (use create)")
        size_text = None
    n = 1
    if count is not None and str(count) != "":
        if not str(count).isdigit() or not 1 <= int(count) <= CREATE_COUNT_MAX:
            raise ArgError(f"count {count!r} must be a number from 1 to {CREATE_COUNT_MAX}")
        n = int(count)
    return DiskSpec(disk, size_text, n)


@dataclass(frozen=True)
class Chap:
    """A CHAP credential set; all empty means "no CHAP"."""

    username: str = ""
    password: str = ""
    mutual_username: str = ""
    mutual_password: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.username)

    def form(self, send_empty_mutual: bool = False) -> dict[str, str | None]:
        """The form fields: mutual_* left out when unset (gwcli 3.5), unless asked for."""
        mutual_empty: str | None = "" if send_empty_mutual else None
        return {
            "username": self.username,
            "password": self.password,
            "mutual_username": self.mutual_username or mutual_empty,
            "mutual_password": self.mutual_password or mutual_empty,
        }


NOCHAP = Chap()


def _split_pair(value: str, key: str) -> tuple[str, str]:
    user, sep, password = value.partition("/")
    if not sep or not user or not password:
        raise ArgError(
            f"{key}= must be USERNAME/PASSWORD (e.g. {key}=myiscsiusername/mypassword12)"
        )
    return user, password


def parse_chap(
    positional: tuple[str, ...] = (),
    username: str | None = None,
    password: str | None = None,
    mutual_username: str | None = None,
    mutual_password: str | None = None,
    chap: str | None = None,
    mutual_chap: str | None = None,
    allow: tuple[str, ...] = ("nochap",),
) -> Chap | str:
    """Credentials from either spelling, or one of the keywords in ``allow`` (e.g. ``nochap``).

    ``auth nochap`` and ``auth chap=nochap`` both mean "remove CHAP".
    """
    if chap is not None and chap.strip().lower() in allow:
        positional = (chap.strip().lower(), *positional)
        chap = None
    if positional:
        word = positional[0].strip()
        if (
            len(positional) == 1
            and word.lower() in allow
            and not any((username, password, mutual_username, mutual_password, chap, mutual_chap))
        ):
            return word.lower()
        if "/" in word and len(positional) == 1 and chap is None:
            chap = word  # auth USER/PASSWORD
        else:
            accepted = " | ".join(allow)
            raise ArgError(
                f"unexpected {' '.join(positional)!r}: use username=… password=… "
                f"[mutual_username=… mutual_password=…], chap=USER/PASSWORD or {accepted}"
            )
    if chap is not None:
        if username is not None or password is not None:
            raise ArgError("give either chap=USER/PASSWORD or username=… password=…, not both")
        username, password = _split_pair(chap, "chap")
    if mutual_chap is not None:
        if mutual_username is not None or mutual_password is not None:
            raise ArgError(
                "give either mutual_chap=USER/PASSWORD or mutual_username=… mutual_password=…"
            )
        mutual_username, mutual_password = _split_pair(mutual_chap, "mutual_chap")
    creds = Chap(username or "", password or "", mutual_username or "", mutual_password or "")
    if not creds.username and not creds.password and not creds.mutual_username:
        raise ArgError(
            "no credentials given: use username=… password=… or chap=USER/PASSWORD "
            f"({' | '.join(allow)} to change the mode)"
        )
    try:
        validate_chap(creds.username, creds.password, creds.mutual_username, creds.mutual_password)
    except ConfigError as exc:
        raise _wrap(exc)
    return creds


def normalize_iqn(text: str | None, what: str = "IQN") -> str:
    """An iqn./eui./naa. name in lower case."""
    if text is None:
        raise ArgError(f"{what} is required (iqn.…, eui.… or naa.…)")
    try:
        return normalize_iscsi_name(str(text).strip(), what)
    except ConfigError as exc:
        raise _wrap(exc)


def parse_ip_list(text: str | None) -> list[str]:
    """``IP[,IP…]`` → canonical addresses, no duplicates."""
    if text is None or not str(text).strip():
        raise ArgError("give the gateway's portal address(es): IP[,IP…]")
    out: list[str] = []
    for part in str(text).split(","):
        part = part.strip().strip("[]")
        if not part:
            continue
        try:
            ip = validate_ip(part)
        except ConfigError as exc:
            raise _wrap(exc)
        if ip not in out:
            out.append(ip)
    if not out:
        raise ArgError("give the gateway's portal address(es): IP[,IP…]")
    return out


def check_gateway_name(text: str | None) -> str:
    if text is None:
        raise ArgError("give the gateway name")
    try:
        return validate_gateway_name(str(text).strip())
    except ConfigError as exc:
        raise _wrap(exc)


def parse_lun_id(text: str | None) -> int | None:
    if text is None or str(text) == "":
        return None
    if not str(text).isdigit():
        raise ArgError(f"lun_id {text!r} must be a number from 0 to 255")
    try:
        return validate_lun_id(int(text))
    except ConfigError as exc:
        raise _wrap(exc)


def parse_flag(value: str | bool | None, what: str, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ArgError(f"{what}={value} must be true or false")


def check_snapshot_name(text: str | None) -> str:
    if text is None or not _SNAP_RE.fullmatch(str(text)):
        raise ArgError(f"snapshot name {text!r} must be non-empty without '/', '@' or spaces")
    return str(text)
