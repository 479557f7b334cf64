"""CHAP for iSCSI login (RFC 7143 §12.1.3, RFC 1994), target side, optionally mutual.

Exchange (one ``ChapAuthenticator`` per login):

1. initiator ``CHAP_A=<list>``  ->  target ``CHAP_A=<a>``, ``CHAP_I=<id>``, ``CHAP_C=0x<challenge>``
2. initiator ``CHAP_N``, ``CHAP_R`` (+ ``CHAP_I``, ``CHAP_C`` for mutual CHAP)
   -> target verifies R = H(id || secret || challenge); for mutual CHAP it answers
   ``CHAP_N=<target user>``, ``CHAP_R=0x<H(id_i || mutual secret || challenge_i)>``.

Algorithms use the Linux target / open-iscsi numbering: 5 MD5, 6 SHA-1, 7 SHA-256,
8 SHA3-256. The challenge is as long as the digest (16-32 bytes). Binary values are accepted
as ``0x`` hex or ``0b`` base64. Every failure raises ``LoginError`` 0x0201 (0x0300 for our own
random source failing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import LoginError
from .keys import parse_number

CHAP_C_MAX = 1024  # bytes of an initiator challenge we accept

_ALGORITHMS: dict[int, str] = {5: "md5", 6: "sha1", 7: "sha256", 8: "sha3_256"}


def _available() -> dict[int, str]:
    out: dict[int, str] = {}
    for number, name in _ALGORITHMS.items():
        try:
            hashlib.new(name)  # MD5 is missing in FIPS mode, as in LIO
        except ValueError:
            continue
        out[number] = name
    return out


SUPPORTED_ALGORITHMS: dict[int, str] = _available()


def digest_size(algorithm: int) -> int:
    return hashlib.new(_ALGORITHMS[algorithm]).digest_size


def chap_response(algorithm: int, identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """H(identifier || secret || challenge)."""
    h = hashlib.new(_ALGORITHMS[algorithm])
    h.update(bytes((identifier,)))
    h.update(secret)
    h.update(challenge)
    return h.digest()


def decode_binary(value: str) -> bytes:
    """A binary value: ``0x``/``0X`` hex or ``0b``/``0B`` base64 (RFC 7143 §6.1)."""
    prefix, body = value[:2], value[2:]
    if prefix in ("0x", "0X"):
        if not body or any(c not in "0123456789abcdefABCDEF" for c in body):
            raise ValueError("bad hex value")
        if len(body) % 2:
            body = "0" + body
        return bytes.fromhex(body)
    if prefix in ("0b", "0B"):
        if not body or not body.isascii():
            raise ValueError("bad base64 value")
        body += "=" * (-len(body) % 4)
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("bad base64 value") from None
    raise ValueError("binary value without 0x/0b prefix")


def encode_hex(data: bytes) -> str:
    return "0x" + data.hex()


@dataclass(frozen=True, slots=True)
class ChapSecrets:
    username: str
    password: str
    mutual_username: str = ""
    mutual_password: str = ""

    def __repr__(self) -> str:  # never log secrets
        return f"ChapSecrets(username={self.username!r}, mutual={bool(self.mutual_username)})"


class RecentChallenges:
    """A bounded set of CHAP challenges seen recently (ours and initiators').

    Shared by every login of a gateway, so that a challenge we issued can never come back as
    an initiator's challenge (reflection, also across parallel logins), we never issue the same
    challenge twice, and an initiator challenge is never accepted twice (replay).
    """

    def __init__(self, maxlen: int = 4096) -> None:
        self._maxlen = maxlen
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, challenge: object) -> bool:
        return challenge in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, challenge: bytes) -> None:
        self._items[challenge] = None
        self._items.move_to_end(challenge)
        while len(self._items) > self._maxlen:
            self._items.popitem(last=False)


_DEFAULT_RECENT = RecentChallenges()


def default_recent_challenges() -> RecentChallenges:
    """The process-wide set used when a caller does not pass its own."""
    return _DEFAULT_RECENT


def _fail(message: str) -> LoginError:
    return LoginError(0x02, 0x01, message)


class ChapAuthenticator:
    """One CHAP exchange. ``step`` takes the CHAP_* keys of one login request."""

    def __init__(
        self,
        secrets: ChapSecrets,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        recent: RecentChallenges | None = None,
        algorithms: tuple[int, ...] | None = None,
    ) -> None:
        self._secrets = secrets
        self._random = random_bytes
        self._recent = recent if recent is not None else _DEFAULT_RECENT
        allowed = SUPPORTED_ALGORITHMS if algorithms is None else algorithms
        self._algorithms = tuple(a for a in allowed if a in SUPPORTED_ALGORITHMS)
        self._state = "start"  # start -> challenged -> done | failed
        self._algorithm = 0
        self._identifier = 0
        self._challenge = b""
        self.username: str | None = None
        self.mutual = False

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def state(self) -> str:
        return self._state

    def step(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        try:
            if self._state == "start":
                return self._on_algorithms(keys)
            if self._state == "challenged":
                return self._on_response(keys)
            raise _fail(f"CHAP keys after the exchange ended ({sorted(keys)})")
        except LoginError:
            self._state = "failed"
            raise

    # -- step 1 ---------------------------------------------------------------------------
    def _on_algorithms(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        if set(keys) != {"CHAP_A"}:
            raise _fail(f"expected CHAP_A alone, got {sorted(keys)}")
        chosen = None
        for item in keys["CHAP_A"].split(","):
            try:
                number = parse_number(item)
            except ValueError:
                continue
            if number in self._algorithms:
                chosen = number
                break
        if chosen is None:
            raise _fail(f"no supported CHAP algorithm in {keys['CHAP_A'][:64]!r}")
        size = digest_size(chosen)
        challenge = b""
        for _ in range(4):
            candidate = self._random(size)
            if len(candidate) == size and candidate not in self._recent:
                challenge = candidate
                break
        if not challenge:
            raise LoginError(0x03, 0x00, "random source produced no fresh CHAP challenge")
        ident_b = self._random(1)
        if len(ident_b) != 1:
            raise LoginError(0x03, 0x00, "random source failed")
        self._algorithm = chosen
        self._identifier = ident_b[0]
        self._challenge = challenge
        self._recent.add(challenge)
        self._state = "challenged"
        return [
            ("CHAP_A", str(chosen)),
            ("CHAP_I", str(self._identifier)),
            ("CHAP_C", encode_hex(challenge)),
        ]

    # -- step 2 ---------------------------------------------------------------------------
    def _on_response(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        extra = set(keys) - {"CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"}
        if extra or "CHAP_N" not in keys or "CHAP_R" not in keys:
            raise _fail(f"expected CHAP_N and CHAP_R, got {sorted(keys)}")
        if ("CHAP_I" in keys) != ("CHAP_C" in keys):
            raise _fail("mutual CHAP needs both CHAP_I and CHAP_C")
        try:
            response = decode_binary(keys["CHAP_R"])
        except ValueError:
            raise _fail("CHAP_R is not a binary value") from None
        if len(response) != digest_size(self._algorithm):
            raise _fail("CHAP_R has the wrong length")
        name = keys["CHAP_N"]  # a literal string, even when it looks like 0x... or 0b...
        secrets = self._secrets
        expected = chap_response(
            self._algorithm, self._identifier, secrets.password.encode(), self._challenge
        )
        name_ok = hmac.compare_digest(name.encode(), secrets.username.encode())
        response_ok = hmac.compare_digest(response, expected)
        if not (name_ok and response_ok) or not secrets.password:
            raise _fail("CHAP authentication failed")
        out: list[tuple[str, str]] = []
        if "CHAP_I" in keys:
            out = self._mutual(keys["CHAP_I"], keys["CHAP_C"])
        self.username = name
        self._state = "done"
        return out

    def _mutual(self, ident_s: str, challenge_s: str) -> list[tuple[str, str]]:
        secrets = self._secrets
        if not secrets.mutual_username or not secrets.mutual_password:
            raise _fail("mutual CHAP requested but not configured")
        if hmac.compare_digest(secrets.mutual_password.encode(), secrets.password.encode()):
            raise _fail("mutual CHAP secret equals the initiator secret")
        try:
            ident = parse_number(ident_s)
        except ValueError:
            raise _fail("bad CHAP_I") from None
        if not 0 <= ident <= 255:
            raise _fail("CHAP_I out of range")
        try:
            challenge = decode_binary(challenge_s)
        except ValueError:
            raise _fail("CHAP_C is not a binary value") from None
        if not 0 < len(challenge) <= CHAP_C_MAX:
            raise _fail("CHAP_C length out of range")
        if challenge == self._challenge or challenge in self._recent:
            raise _fail("initiator CHAP_C reflects or replays a known challenge")
        self._recent.add(challenge)
        self.mutual = True
        answer = chap_response(self._algorithm, ident, secrets.mutual_password.encode(), challenge)
        return [("CHAP_N", secrets.mutual_username), ("CHAP_R", encode_hex(answer))]
