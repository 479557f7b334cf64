"""Text Requests / SendTargets (RFC 7143 App. C; libiscsi iSCSISendTargets)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from iscsigw.errors import PduRejected
from iscsigw.iscsi import pdu as P
from iscsigw.iscsi.constants import RESERVED_TAG, Opcode, RejectReason
from iscsigw.iscsi.discovery import TextExchange, format_target_address

INIT = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
T1 = "iqn.2003-01.org.example:disk1"
T2 = "iqn.2003-01.org.example:disk2"


@dataclass
class FakeSendTargets:
    targets: dict[str, list[str]] = field(
        default_factory=lambda: {
            T1: ["192.0.2.1:3260,1", "192.0.2.2:3260,2"],
            T2: ["fe80::1:3260,3", "[2001:db8::5]:3261,4"],
        }
    )
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)

    def send_targets(
        self, initiator_name: str, which: str, current_target: str | None
    ) -> list[tuple[str, list[str]]]:
        self.calls.append((initiator_name, which, current_target))
        if which == "All":
            names = list(self.targets)
        elif which == "":
            names = [current_target] if current_target else []
        else:
            names = [which] if which in self.targets else []
        return [(n, self.targets[n]) for n in names if n is not None]


def text_req(
    data: bytes, *, itt: int = 1, ttt: int = RESERVED_TAG, final: bool = True, cont: bool = False
) -> P.Pdu:
    flags = (0x80 if final else 0) | (0x40 if cont else 0)
    return P.generic_request(
        Opcode.TEXT_REQ, flags, itt=itt, cmdsn=3, ttt=ttt, immediate=True, data=data
    )


def exchange(
    session_type: str = "Discovery", target: str | None = None
) -> tuple[TextExchange, FakeSendTargets]:
    policy = FakeSendTargets()
    return (
        TextExchange(policy, initiator_name=INIT, session_type=session_type, target_name=target),
        policy,
    )


_ttts = itertools.count(0x100)


def ttt() -> int:
    return next(_ttts)


def pairs(rsp: P.Pdu) -> list[tuple[str, str]]:
    out = []
    for item in bytes(rsp.data).split(b"\0"):
        if item:
            k, _, v = item.decode().partition("=")
            out.append((k, v))
    return out


def test_send_targets_all_in_discovery() -> None:
    tx, policy = exchange()
    rsp = tx.handle(text_req(b"SendTargets=All\0", itt=9), 8192, ttt)
    assert rsp.opcode == Opcode.TEXT_RSP
    assert rsp.final and not rsp.flags & 0x40
    assert rsp.itt == 9 and rsp.ttt == RESERVED_TAG
    assert pairs(rsp) == [
        ("TargetName", T1),
        ("TargetAddress", "192.0.2.1:3260,1"),
        ("TargetAddress", "192.0.2.2:3260,2"),
        ("TargetName", T2),
        ("TargetAddress", "[fe80::1]:3260,3"),
        ("TargetAddress", "[2001:db8::5]:3261,4"),
    ]
    assert bytes(rsp.data).endswith(b"\0")
    assert policy.calls == [(INIT, "All", None)]


def test_normal_session_forms() -> None:
    tx, policy = exchange("Normal", T1)
    rsp = tx.handle(text_req(b"SendTargets=\0"), 8192, ttt)
    assert [v for k, v in pairs(rsp) if k == "TargetName"] == [T1]
    rsp = tx.handle(text_req(("SendTargets=" + T2).encode() + b"\0"), 8192, ttt)
    assert [v for k, v in pairs(rsp) if k == "TargetName"] == [T2]
    rsp = tx.handle(text_req(b"SendTargets=All\0"), 8192, ttt)
    assert [v for k, v in pairs(rsp) if k == "TargetName"] == [T1, T2]
    assert policy.calls == [(INIT, "", T1), (INIT, T2, T1), (INIT, "All", T1)]


def test_empty_value_in_discovery_lists_nothing() -> None:
    tx, policy = exchange()
    rsp = tx.handle(text_req(b"SendTargets=\0"), 8192, ttt)
    assert pairs(rsp) == [] and rsp.final and policy.calls == []


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"SendTargetsPlease=All\0", [("SendTargetsPlease", "NotUnderstood")]),
        (b"sENDtARGETS=aLL\0", [("sENDtARGETS", "NotUnderstood")]),
        (b"SendTargets=Alle\0", [("SendTargets", "Reject")]),
        (b"SendTargets=A\0", [("SendTargets", "Reject")]),
        (b"SendTargets=all\0", [("SendTargets", "Reject")]),
        (b"MaxRecvDataSegmentLength=65536\0", [("MaxRecvDataSegmentLength", "Reject")]),
    ],
)
def test_invalid_requests(data: bytes, expected: list[tuple[str, str]]) -> None:
    tx, policy = exchange("Normal", T1)
    rsp = tx.handle(text_req(data), 8192, ttt)
    assert pairs(rsp) == expected and rsp.final
    assert policy.calls == []


@pytest.mark.parametrize("data", [b"SendTargets\0", b"=All\0", b"a=1\0a=2\0"])
def test_malformed_text_is_rejected(data: bytes) -> None:
    tx, _ = exchange()
    with pytest.raises(PduRejected) as exc:
        tx.handle(text_req(data), 8192, ttt)
    assert exc.value.reason == RejectReason.PROTOCOL_ERROR
    assert len(exc.value.bhs) == 48


def test_long_response_continuation() -> None:
    tx, policy = exchange()
    policy.targets = {f"iqn.2003-01.org.example:t{i:03d}": ["192.0.2.1:3260,1"] for i in range(60)}
    full_tx, _ = exchange()
    full_tx._policy = policy  # same listing in one piece for comparison
    whole = bytes(full_tx.handle(text_req(b"SendTargets=All\0"), 1 << 20, ttt).data)
    assert len(whole) > 2048
    rsp = tx.handle(text_req(b"SendTargets=All\0", itt=5), 512, ttt)
    chunks = [bytes(rsp.data)]
    seen_ttts = set()
    while rsp.flags & 0x40:
        assert not rsp.final and len(rsp.data) == 512
        assert rsp.ttt != RESERVED_TAG and rsp.ttt not in seen_ttts
        seen_ttts.add(rsp.ttt)
        rsp = tx.handle(text_req(b"", itt=5, ttt=rsp.ttt), 512, ttt)
        assert rsp.itt == 5
        chunks.append(bytes(rsp.data))
    assert rsp.final and rsp.ttt == RESERVED_TAG
    assert b"".join(chunks) == whole
    assert len(chunks) == -(-len(whole) // 512)


def test_continuation_with_wrong_ttt_is_rejected() -> None:
    tx, policy = exchange()
    policy.targets = {f"iqn.2003-01.org.example:t{i:03d}": ["192.0.2.1:3260,1"] for i in range(20)}
    rsp = tx.handle(text_req(b"SendTargets=All\0"), 256, ttt)
    assert rsp.flags & 0x40
    with pytest.raises(PduRejected) as exc:
        tx.handle(text_req(b"", ttt=rsp.ttt + 1), 256, ttt)
    assert exc.value.reason == RejectReason.INVALID_PDU_FIELD


def test_unknown_ttt_without_exchange_is_rejected() -> None:
    tx, _ = exchange()
    with pytest.raises(PduRejected):
        tx.handle(text_req(b"SendTargets=All\0", ttt=1234), 8192, ttt)


def test_new_request_resets_a_pending_continuation() -> None:
    tx, policy = exchange()
    policy.targets = {f"iqn.2003-01.org.example:t{i:03d}": ["192.0.2.1:3260,1"] for i in range(20)}
    rsp = tx.handle(text_req(b"SendTargets=All\0"), 256, ttt)
    assert rsp.flags & 0x40
    rsp = tx.handle(text_req(b"X-a=1\0", itt=2), 8192, ttt)
    assert pairs(rsp) == [("X-a", "NotUnderstood")] and rsp.final


def test_initiator_continued_request() -> None:
    tx, _ = exchange()
    r1 = tx.handle(text_req(b"SendTar", final=False, cont=True), 8192, ttt)
    assert r1.data_length == 0 and not r1.final and not r1.flags & 0x40
    assert r1.ttt != RESERVED_TAG
    r2 = tx.handle(text_req(b"gets=All\0", ttt=r1.ttt), 8192, ttt)
    assert r2.final and ("TargetName", T1) in pairs(r2)


def test_f_and_c_together_rejected() -> None:
    tx, _ = exchange()
    with pytest.raises(PduRejected):
        tx.handle(text_req(b"SendTargets=All\0", final=True, cont=True), 8192, ttt)


def test_text_while_our_response_continues_is_rejected() -> None:
    tx, policy = exchange()
    policy.targets = {f"iqn.2003-01.org.example:t{i:03d}": ["192.0.2.1:3260,1"] for i in range(20)}
    rsp = tx.handle(text_req(b"SendTargets=All\0"), 256, ttt)
    with pytest.raises(PduRejected):
        tx.handle(text_req(b"X-a=1\0", ttt=rsp.ttt), 256, ttt)


def test_never_returns_reserved_ttt_for_continuation() -> None:
    tx, policy = exchange()
    policy.targets = {f"iqn.2003-01.org.example:t{i:03d}": ["192.0.2.1:3260,1"] for i in range(20)}
    values = iter([RESERVED_TAG, 77])
    rsp = tx.handle(text_req(b"SendTargets=All\0"), 256, lambda: next(values))
    assert rsp.ttt == 77


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("192.0.2.1:3260,1", "192.0.2.1:3260,1"),
        ("fe80::1:3260,2", "[fe80::1]:3260,2"),
        ("[::1]:3260,2", "[::1]:3260,2"),
        ("host.example:3260", "host.example:3260"),
        ("192.0.2.9", "192.0.2.9"),
    ],
)
def test_format_target_address(raw: str, expected: str) -> None:
    assert format_target_address(raw) == expected
