"""ChapAuthenticator and the CHAP value encodings (RFC 7143 §12.1.3)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest

from iscsigw.errors import LoginError
from iscsigw.iscsi.auth import (
    SUPPORTED_ALGORITHMS,
    ChapAuthenticator,
    ChapSecrets,
    RecentChallenges,
    decode_binary,
    encode_hex,
)

SECRETS = ChapSecrets("user", "initiator-secret", "tgt", "target-secret")


def counter_random() -> Callable[[int], bytes]:
    state = {"n": 0}

    def rnd(n: int) -> bytes:
        state["n"] += 1
        return hashlib.sha512(str(state["n"]).encode()).digest()[:n]

    return rnd


def make(secrets: ChapSecrets = SECRETS, **kw: object) -> ChapAuthenticator:
    return ChapAuthenticator(
        secrets,
        random_bytes=counter_random(),
        recent=RecentChallenges(),
        **kw,  # type: ignore[arg-type]
    )


def test_all_four_algorithms_available() -> None:
    assert set(SUPPORTED_ALGORITHMS) == {5, 6, 7, 8}


@pytest.mark.parametrize(
    "value,expected",
    [
        ("0x00ff", b"\x00\xff"),
        ("0XABcd", b"\xab\xcd"),
        ("0xabc", b"\x0a\xbc"),  # odd digit count: leading zero nibble
        ("0b" + base64.b64encode(b"hello").decode(), b"hello"),
        ("0BaGk", b"hi"),  # padding optional
    ],
)
def test_decode_binary(value: str, expected: bytes) -> None:
    assert decode_binary(value) == expected


@pytest.mark.parametrize(
    "value", ["", "00ff", "0x", "0xgg", "0b", "0b!!!!", "0b\u00e9\u00e9", "ff"]
)
def test_decode_binary_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        decode_binary(value)


def test_encode_hex() -> None:
    assert encode_hex(b"\x01\xab") == "0x01ab"


def test_secrets_repr_hides_passwords() -> None:
    assert "secret" not in repr(SECRETS)


def test_full_mutual_exchange_sha256() -> None:
    auth = make()
    out = dict(auth.step({"CHAP_A": "7"}))
    assert out["CHAP_A"] == "7"
    ident, chal = int(out["CHAP_I"]), decode_binary(out["CHAP_C"])
    assert len(chal) == 32
    r = hashlib.sha256(bytes([ident]) + b"initiator-secret" + chal).digest()
    mine = b"\x42" * 24
    reply = dict(
        auth.step(
            {
                "CHAP_N": "user",
                "CHAP_R": encode_hex(r),
                "CHAP_I": "0x10",
                "CHAP_C": encode_hex(mine),
            }
        )
    )
    assert auth.done and auth.mutual and auth.username == "user"
    assert reply["CHAP_N"] == "tgt"
    assert (
        decode_binary(reply["CHAP_R"]) == hashlib.sha256(b"\x10" + b"target-secret" + mine).digest()
    )
    with pytest.raises(LoginError):
        auth.step({"CHAP_A": "5"})


def test_algorithm_restriction() -> None:
    auth = make(algorithms=(7,))
    with pytest.raises(LoginError) as exc:
        auth.step({"CHAP_A": "5,6"})
    assert (exc.value.status_class, exc.value.status_detail) == (2, 1)
    assert auth.state == "failed"


def test_unexpected_keys_in_first_step() -> None:
    with pytest.raises(LoginError):
        make().step({"CHAP_A": "5", "CHAP_N": "user"})


def test_empty_password_never_authenticates() -> None:
    auth = make(ChapSecrets("user", ""))
    out = dict(auth.step({"CHAP_A": "5"}))
    ident, chal = int(out["CHAP_I"]), decode_binary(out["CHAP_C"])
    r = hashlib.md5(bytes([ident]) + chal).digest()
    with pytest.raises(LoginError):
        auth.step({"CHAP_N": "user", "CHAP_R": encode_hex(r)})


def test_short_random_source_is_a_target_error() -> None:
    auth = ChapAuthenticator(SECRETS, random_bytes=lambda n: b"\x01", recent=RecentChallenges())
    with pytest.raises(LoginError) as exc:
        auth.step({"CHAP_A": "5"})
    assert exc.value.status_class == 3


def test_recent_challenges_is_bounded() -> None:
    r = RecentChallenges(maxlen=3)
    for i in range(5):
        r.add(bytes([i]))
    assert len(r) == 3
    assert bytes([0]) not in r and bytes([4]) in r
    r.add(bytes([2]))  # refresh: 3 is now the oldest
    r.add(bytes([9]))
    assert bytes([3]) not in r and bytes([2]) in r
