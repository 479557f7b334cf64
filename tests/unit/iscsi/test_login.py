"""LoginNegotiator driven with real Login Request PDUs (RFC 7143 §6, scsi-requirements §1.3-1.5)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iscsigw.errors import LoginError
from iscsigw.iscsi import pdu as P
from iscsigw.iscsi.auth import ChapSecrets, RecentChallenges
from iscsigw.iscsi.constants import Opcode
from iscsigw.iscsi.keys import TargetSettings
from iscsigw.iscsi.login import LoginNegotiator, LoginStep, TargetView

INITIATOR = "iqn.1994-05.com.redhat:client1"
TARGET = "iqn.2003-01.org.example:disk1"
ISID = 0x00023D000001
TSIH = 0x1234

USER, SECRET = "alice", "alice-secret-12"
TUSER, TSECRET = "target-user", "target-secret-34"

HASHES = {5: hashlib.md5, 6: hashlib.sha1, 7: hashlib.sha256, 8: hashlib.sha3_256}


@dataclass
class FakeTarget:
    name: str = TARGET
    alias: str = ""
    tpgt: int = 7
    acl: frozenset[str] | None = None
    chap: ChapSecrets | None = None

    def allows(self, initiator_name: str) -> bool:
        return self.acl is None or initiator_name in self.acl

    def chap_for(self, initiator_name: str) -> ChapSecrets | None:
        return self.chap


@dataclass
class FakePolicy:
    targets: dict[str, FakeTarget] = field(default_factory=lambda: {TARGET: FakeTarget()})
    disc_chap: ChapSecrets | None = None
    settings: TargetSettings = field(default_factory=TargetSettings)
    binds: list[dict[str, object]] = field(default_factory=list)

    def find_target(self, name: str) -> TargetView | None:
        return self.targets.get(name)

    def discovery_chap(self, initiator_name: str) -> ChapSecrets | None:
        return self.disc_chap

    def bind_session(
        self,
        *,
        initiator_name: str,
        isid: int,
        tsih: int,
        target_name: str | None,
        session_type: str,
    ) -> int:
        self.binds.append(
            dict(
                initiator_name=initiator_name,
                isid=isid,
                tsih=tsih,
                target_name=target_name,
                session_type=session_type,
            )
        )
        if tsih:
            raise LoginError(0x02, 0x0A, "no such session")
        return TSIH


class Rand:
    """Deterministic, never-repeating random_bytes."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            self.n += 1
            out += hashlib.sha256(self.n.to_bytes(8, "big")).digest()
        return out[:size]


def enc(pairs: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def req(
    pairs: list[tuple[str, str]] | bytes,
    *,
    csg: int,
    nsg: int = 0,
    transit: bool = False,
    cont: bool = False,
    tsih: int = 0,
    itt: int = 0x11,
    isid: int = ISID,
    cid: int = 0,
) -> P.Pdu:
    data = pairs if isinstance(pairs, bytes) else enc(pairs)
    return P.login_request(
        isid=isid,
        tsih=tsih,
        itt=itt,
        cid=cid,
        cmdsn=5,
        csg=csg,
        nsg=nsg,
        transit=transit,
        cont=cont,
        data=data,
    )


def keys(step: LoginStep) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in bytes(step.response.data).split(b"\0"):
        if item:
            k, _, v = item.decode().partition("=")
            assert k not in out, f"duplicate key {k} in response"
            out[k] = v
    return out


def key_list(step: LoginStep) -> list[str]:
    return [i.decode().partition("=")[0] for i in bytes(step.response.data).split(b"\0") if i]


def status(step: LoginStep) -> int:
    b = step.response.bhs
    return (b[36] << 8) | b[37]


def flags(step: LoginStep) -> tuple[bool, bool, int, int]:
    f = step.response.flags
    return bool(f & 0x80), bool(f & 0x40), (f >> 2) & 3, f & 3


def ident(
    target: str | None = TARGET, session_type: str | None = "Normal"
) -> list[tuple[str, str]]:
    out = [("InitiatorName", INITIATOR)]
    if session_type is not None:
        out.append(("SessionType", session_type))
    if target is not None:
        out.append(("TargetName", target))
    return out


def negotiator(policy: FakePolicy | None = None) -> tuple[LoginNegotiator, FakePolicy]:
    policy = policy or FakePolicy()
    return (
        LoginNegotiator(policy, random_bytes=Rand(), recent_challenges=RecentChallenges()),
        policy,
    )


def assert_failed(step: LoginStep, code: int) -> None:
    assert step.failed
    assert step.outcome is None
    assert status(step) == code
    assert step.response.opcode == Opcode.LOGIN_RSP
    assert flags(step)[0] is False


# ---------------------------------------------------------------------------- open target


def test_open_target_single_request_to_ffp() -> None:
    neg, policy = negotiator()
    pdu = req(
        [
            *ident(),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxRecvDataSegmentLength", "65536"),
        ],
        csg=1,
        nsg=3,
        transit=True,
        itt=0xABCD,
    )
    step = neg.handle(pdu)
    assert not step.failed and status(step) == 0
    assert flags(step) == (True, False, 1, 3)
    rsp = step.response
    assert rsp.opcode == Opcode.LOGIN_RSP
    assert rsp.itt == 0xABCD
    assert rsp.isid == ISID
    assert rsp.tsih == TSIH
    assert rsp.bhs[2] == 0 and rsp.bhs[3] == 0
    k = keys(step)
    assert k["TargetPortalGroupTag"] == "7"
    assert "TargetAlias" not in k
    assert k["HeaderDigest"] == "None" and k["DataDigest"] == "None"
    assert k["MaxRecvDataSegmentLength"] == "262144"
    out = step.outcome
    assert out is not None
    assert out.session_type == "Normal" and out.initiator_name == INITIATOR
    assert out.target is policy.targets[TARGET]
    assert out.isid == ISID and out.tsih == TSIH and out.auth_method == "None"
    assert out.chap_username is None
    assert out.params.max_xmit_data_segment_length == 65536
    assert out.params.max_recv_data_segment_length == 262144
    assert policy.binds == [
        dict(initiator_name=INITIATOR, isid=ISID, tsih=0, target_name=TARGET, session_type="Normal")
    ]
    # nothing more is accepted on this negotiator
    assert_failed(neg.handle(pdu), 0x020B)


def test_security_none_then_operational() -> None:
    neg, _ = negotiator()
    s1 = neg.handle(req([*ident(), ("AuthMethod", "None")], csg=0, nsg=1, transit=True))
    assert status(s1) == 0 and flags(s1) == (True, False, 0, 1)
    assert s1.response.tsih == 0  # TSIH only in the final response
    assert keys(s1) == {"AuthMethod": "None", "TargetPortalGroupTag": "7"}
    assert s1.outcome is None
    s2 = neg.handle(req([("ErrorRecoveryLevel", "0")], csg=1, nsg=3, transit=True))
    assert flags(s2) == (True, False, 1, 3)
    assert keys(s2) == {"ErrorRecoveryLevel": "0", "MaxRecvDataSegmentLength": "262144"}
    assert s2.outcome is not None and s2.outcome.auth_method == "None"


def test_target_alias_sent_when_set_and_tpgt_only_first() -> None:
    policy = FakePolicy(targets={TARGET: FakeTarget(alias="disk one", tpgt=3)})
    neg, _ = negotiator(policy)
    s1 = neg.handle(req(ident(), csg=1))
    assert keys(s1)["TargetAlias"] == "disk one"
    assert keys(s1)["TargetPortalGroupTag"] == "3"
    s2 = neg.handle(req([], csg=1, nsg=3, transit=True))
    assert "TargetPortalGroupTag" not in keys(s2)
    assert s2.outcome is not None


def test_transit_never_beyond_requested_and_only_when_asked() -> None:
    neg, _ = negotiator()
    s = neg.handle(req([*ident(), ("AuthMethod", "None")], csg=0))
    assert flags(s) == (False, False, 0, 0)
    s = neg.handle(req([], csg=0, nsg=1, transit=True))
    assert flags(s) == (True, False, 0, 1)
    s = neg.handle(req([], csg=1))
    assert flags(s)[0] is False and s.outcome is None
    s = neg.handle(req([], csg=1, nsg=3, transit=True))
    assert flags(s) == (True, False, 1, 3) and s.outcome is not None


def test_security_directly_to_full_feature() -> None:
    neg, _ = negotiator()
    s = neg.handle(req([*ident(), ("AuthMethod", "None")], csg=0, nsg=3, transit=True))
    assert flags(s) == (True, False, 0, 3)
    assert s.outcome is not None
    assert s.outcome.params.max_recv_data_segment_length == 8192  # never declared


# ---------------------------------------------------------------------------- first request


@pytest.mark.parametrize(
    "pairs,code",
    [
        ([("SessionType", "Normal"), ("TargetName", TARGET)], 0x0207),
        ([("InitiatorName", INITIATOR), ("SessionType", "Normal")], 0x0207),
        ([("InitiatorName", INITIATOR), ("SessionType", "Weird"), ("TargetName", TARGET)], 0x0209),
        (
            [("InitiatorName", INITIATOR), ("TargetName", "iqn.2003-01.org.example:nope")],
            0x0203,
        ),
        ([("InitiatorName", "not a name"), ("TargetName", TARGET)], 0x0200),
    ],
)
def test_first_request_errors(pairs: list[tuple[str, str]], code: int) -> None:
    neg, policy = negotiator()
    assert_failed(neg.handle(req(pairs, csg=1, nsg=3, transit=True)), code)
    assert policy.binds == []


def test_session_type_defaults_to_normal() -> None:
    neg, _ = negotiator()
    s = neg.handle(req(ident(session_type=None), csg=1, nsg=3, transit=True))
    assert s.outcome is not None and s.outcome.session_type == "Normal"


def test_acl_deny() -> None:
    policy = FakePolicy(targets={TARGET: FakeTarget(acl=frozenset({"iqn.2000-01.com.other:x"}))})
    neg, _ = negotiator(policy)
    assert_failed(neg.handle(req(ident(), csg=1, nsg=3, transit=True)), 0x0202)


def test_unsupported_version() -> None:
    neg, _ = negotiator()
    pdu = req(ident(), csg=1, nsg=3, transit=True)
    pdu.bhs[2] = 2  # type: ignore[index]
    pdu.bhs[3] = 1  # type: ignore[index]
    step = neg.handle(pdu)
    assert_failed(step, 0x0205)
    assert step.response.itt == 0x11 and step.response.isid == ISID


def test_unknown_session_for_nonzero_tsih() -> None:
    neg, policy = negotiator()
    assert_failed(neg.handle(req(ident(), csg=1, nsg=3, transit=True, tsih=99)), 0x020A)
    assert policy.binds[0]["tsih"] == 99


# ---------------------------------------------------------------------------- flags and stages


@pytest.mark.parametrize(
    "kw",
    [
        dict(csg=1, nsg=3, transit=True, cont=True),  # T and C
        dict(csg=2),  # reserved stage
        dict(csg=3),
        dict(csg=1, nsg=1, transit=True),  # NSG not after CSG
        dict(csg=0, nsg=2, transit=True),
    ],
)
def test_bad_stage_flags(kw: dict[str, object]) -> None:
    neg, _ = negotiator()
    assert_failed(neg.handle(req(ident(), **kw)), 0x0200)  # type: ignore[arg-type]


def test_csg_must_follow_the_login() -> None:
    neg, _ = negotiator()
    neg.handle(req([*ident(), ("AuthMethod", "None")], csg=0))
    assert_failed(neg.handle(req([], csg=1, nsg=3, transit=True)), 0x0200)


def test_isid_or_cid_change_is_an_error() -> None:
    neg, _ = negotiator()
    neg.handle(req(ident(), csg=1))
    assert_failed(neg.handle(req([], csg=1, nsg=3, transit=True, cid=1)), 0x0200)


def test_non_login_pdu() -> None:
    neg, _ = negotiator()
    nop = P.generic_request(Opcode.NOP_OUT, 0x80, itt=1, cmdsn=0, immediate=True)
    assert_failed(neg.handle(nop), 0x020B)


# ---------------------------------------------------------------------------- partial text


def test_partial_text_c_bit() -> None:
    neg, _ = negotiator()
    text = enc([*ident(), ("MaxBurstLength", "65536"), ("HeaderDigest", "CRC32C,None")])
    cut = text.index(b"Burst")  # split inside a key
    s1 = neg.handle(req(text[:cut], csg=1, cont=True))
    assert status(s1) == 0 and not s1.failed
    assert bytes(s1.response.data) == b""
    assert flags(s1) == (False, False, 1, 0)
    s2 = neg.handle(req(text[cut:], csg=1, nsg=3, transit=True))
    assert status(s2) == 0
    k = keys(s2)
    assert k["MaxBurstLength"] == "65536" and k["HeaderDigest"] == "CRC32C"
    assert k["TargetPortalGroupTag"] == "7"
    assert s2.outcome is not None and s2.outcome.params.header_digest is True


def test_total_login_text_is_limited() -> None:
    neg, _ = negotiator()
    chunk = b"X-a=" + b"b" * 8000
    step = None
    for _ in range(9):
        step = neg.handle(req(chunk, csg=1, cont=True))
        if step.failed:
            break
    assert step is not None
    assert_failed(step, 0x0302)


def test_long_response_is_continued() -> None:
    neg, _ = negotiator()
    unknown = [(f"X-vendor-{i:04d}-" + "k" * 40, "v") for i in range(250)]
    s = neg.handle(req([*ident(), *unknown], csg=1, nsg=3, transit=True))
    data = bytes(s.response.data)
    assert flags(s) == (False, True, 1, 0) and len(data) == 8192 and s.outcome is None
    parts = [data]
    while True:
        s = neg.handle(req(b"", csg=1, nsg=3, transit=True))
        assert status(s) == 0
        parts.append(bytes(s.response.data))
        if not flags(s)[1]:
            break
    assert flags(s) == (True, False, 1, 3) and s.outcome is not None
    text = b"".join(parts)
    assert text.count(b"=NotUnderstood\0") == 250


# ---------------------------------------------------------------------------- negotiation


def _negotiate(pairs: list[tuple[str, str]], session_type: str = "Normal") -> LoginStep:
    neg, _ = negotiator()
    target = TARGET if session_type == "Normal" else None
    step = neg.handle(req([*ident(target, session_type), *pairs], csg=1, nsg=3, transit=True))
    assert status(step) == 0, keys(step)
    return step


def test_key_functions() -> None:
    step = _negotiate(
        [
            ("HeaderDigest", "None,CRC32C"),
            ("DataDigest", "CRC32C,None"),
            ("MaxConnections", "4"),
            ("InitialR2T", "No"),
            ("ImmediateData", "No"),
            ("MaxRecvDataSegmentLength", "0x2000"),
            ("MaxBurstLength", "16776192"),
            ("FirstBurstLength", "65536"),
            ("DefaultTime2Wait", "0"),
            ("DefaultTime2Retain", "20"),
            ("MaxOutstandingR2T", "8"),
            ("DataPDUInOrder", "No"),
            ("DataSequenceInOrder", "Yes"),
            ("ErrorRecoveryLevel", "2"),
            ("IFMarker", "Yes"),
            ("OFMarker", "No"),
            ("IFMarkInt", "2048~8192"),
            ("OFMarkInt", "2048"),
            ("X-com.example.Foo", "1"),
            ("iSCSIProtocolLevel", "1"),
        ]
    )
    assert keys(step) == {
        "TargetPortalGroupTag": "7",
        "HeaderDigest": "None",
        "DataDigest": "CRC32C",
        "MaxConnections": "1",
        "InitialR2T": "Yes",
        "ImmediateData": "No",
        "MaxRecvDataSegmentLength": "262144",
        "MaxBurstLength": "1048576",
        "FirstBurstLength": "65536",
        "DefaultTime2Wait": "2",
        "DefaultTime2Retain": "0",
        "MaxOutstandingR2T": "1",
        "DataPDUInOrder": "Yes",
        "DataSequenceInOrder": "Yes",
        "ErrorRecoveryLevel": "0",
        "IFMarker": "No",
        "OFMarker": "No",
        "IFMarkInt": "Reject",
        "OFMarkInt": "Reject",
        "X-com.example.Foo": "NotUnderstood",
        "iSCSIProtocolLevel": "NotUnderstood",
    }
    assert step.outcome is not None
    p = step.outcome.params
    assert (p.header_digest, p.data_digest) == (False, True)
    assert p.max_xmit_data_segment_length == 8192
    assert p.max_recv_data_segment_length == 262144
    assert p.max_burst_length == 1048576 and p.first_burst_length == 65536
    assert p.initial_r2t is True and p.immediate_data is False
    assert p.default_time2wait == 2 and p.default_time2retain == 0
    assert p.error_recovery_level == 0 and p.max_connections == 1
    assert p.max_outstanding_r2t == 1


def test_response_answers_keys_in_order() -> None:
    step = _negotiate([("MaxBurstLength", "65536"), ("HeaderDigest", "None"), ("X-a", "b")])
    assert key_list(step) == [
        "TargetPortalGroupTag",
        "MaxBurstLength",
        "HeaderDigest",
        "X-a",
        "MaxRecvDataSegmentLength",
    ]


def test_rfc_defaults_when_not_negotiated() -> None:
    step = _negotiate([])
    assert step.outcome is not None
    p = step.outcome.params
    assert p.max_burst_length == 262144 and p.first_burst_length == 65536
    assert p.default_time2retain == 20 and p.max_xmit_data_segment_length == 8192


def test_first_burst_clamped_to_max_burst() -> None:
    step = _negotiate([("MaxBurstLength", "16384"), ("FirstBurstLength", "262144")])
    k = keys(step)
    assert k["MaxBurstLength"] == "16384" and k["FirstBurstLength"] == "16384"
    assert step.outcome is not None and step.outcome.params.first_burst_length == 16384


@pytest.mark.parametrize(
    "key,value",
    [
        ("HeaderDigest", "MD5"),
        ("DataDigest", "CRC32C,,None"),
        ("MaxRecvDataSegmentLength", "511"),
        ("MaxRecvDataSegmentLength", "16777216"),
        ("MaxBurstLength", "abc"),
        ("MaxConnections", "0"),
        ("ErrorRecoveryLevel", "3"),
        ("DefaultTime2Wait", "3601"),
        ("InitialR2T", "yes"),
        ("ImmediateData", ""),
        ("IFMarker", "maybe"),
        ("MaxBurstLength", "9" * 30),
    ],
)
def test_bad_values_are_rejected(key: str, value: str) -> None:
    step = _negotiate([(key, value)])
    assert keys(step)[key] == "Reject"


def test_digest_follows_initiator_order_within_our_set() -> None:
    policy = FakePolicy(settings=TargetSettings(header_digests=("None",)))
    neg, _ = negotiator(policy)
    s = neg.handle(req([*ident(), ("HeaderDigest", "CRC32C,None")], csg=1, nsg=3, transit=True))
    assert keys(s)["HeaderDigest"] == "None"
    neg, _ = negotiator(policy)
    s = neg.handle(req([*ident(), ("HeaderDigest", "CRC32C")], csg=1, nsg=3, transit=True))
    assert keys(s)["HeaderDigest"] == "Reject"
    assert s.outcome is not None and s.outcome.params.header_digest is False


def test_declaration_not_duplicated_when_initiator_declares() -> None:
    step = _negotiate([("MaxRecvDataSegmentLength", "131072")])
    assert key_list(step).count("MaxRecvDataSegmentLength") == 1
    neg, _ = negotiator()
    s = neg.handle(req([*ident(), ("MaxRecvDataSegmentLength", "100")], csg=1))
    assert keys(s)["MaxRecvDataSegmentLength"] == "Reject"
    s = neg.handle(req([], csg=1, nsg=3, transit=True))
    assert "MaxRecvDataSegmentLength" not in keys(s)
    assert s.outcome is not None and s.outcome.params.max_recv_data_segment_length == 8192


def test_discovery_marks_normal_only_keys_irrelevant() -> None:
    step = _negotiate(
        [
            ("HeaderDigest", "None"),
            ("MaxBurstLength", "65536"),
            ("InitialR2T", "Yes"),
            ("MaxConnections", "1"),
            ("ErrorRecoveryLevel", "0"),
            ("DefaultTime2Wait", "2"),
        ],
        session_type="Discovery",
    )
    assert keys(step) == {
        "HeaderDigest": "None",
        "MaxBurstLength": "Irrelevant",
        "InitialR2T": "Irrelevant",
        "MaxConnections": "Irrelevant",
        "ErrorRecoveryLevel": "0",
        "DefaultTime2Wait": "2",
        "MaxRecvDataSegmentLength": "262144",
    }
    assert step.outcome is not None
    assert step.outcome.session_type == "Discovery" and step.outcome.target is None


def test_target_only_keys_and_sendtargets_not_understood_in_login() -> None:
    step = _negotiate([("TargetAlias", "x"), ("TargetPortalGroupTag", "1"), ("SendTargets", "All")])
    k = keys(step)
    assert k["TargetAlias"] == "NotUnderstood"
    assert k["TargetPortalGroupTag"] == "7"  # our declaration answers theirs, once
    assert k["SendTargets"] == "NotUnderstood"


def test_operational_keys_in_security_stage_not_understood() -> None:
    neg, _ = negotiator()
    s = neg.handle(
        req(
            [*ident(), ("AuthMethod", "None"), ("MaxBurstLength", "65536")],
            csg=0,
            nsg=1,
            transit=True,
        )
    )
    assert keys(s)["MaxBurstLength"] == "NotUnderstood"
    assert status(s) == 0


def test_chap_key_in_operational_stage() -> None:
    neg, _ = negotiator()
    assert_failed(neg.handle(req([*ident(), ("CHAP_A", "5")], csg=1)), 0x0200)


def test_auth_method_in_operational_stage() -> None:
    neg, _ = negotiator()
    assert_failed(neg.handle(req([*ident(), ("AuthMethod", "None")], csg=1)), 0x0200)


def test_key_twice_in_one_login() -> None:
    neg, _ = negotiator()
    neg.handle(req([*ident(), ("MaxBurstLength", "65536")], csg=1))
    assert_failed(neg.handle(req([("MaxBurstLength", "65536")], csg=1)), 0x0200)


def test_key_twice_in_one_pdu() -> None:
    neg, _ = negotiator()
    text = enc([*ident(), ("X-a", "1"), ("X-a", "2")])
    assert_failed(neg.handle(req(text, csg=1)), 0x0200)


def test_identity_may_repeat_unchanged_but_not_change() -> None:
    neg, _ = negotiator()
    neg.handle(req(ident(), csg=1))
    s = neg.handle(req([("InitiatorName", INITIATOR)], csg=1))
    assert status(s) == 0
    assert_failed(neg.handle(req([("TargetName", "iqn.2003-01.org.example:other")], csg=1)), 0x0200)


@pytest.mark.parametrize("text", [b"novalue\0", b"=x\0", b"a b=1\0", b"k=\xff\xfe\0"])
def test_malformed_text(text: bytes) -> None:
    neg, _ = negotiator()
    assert_failed(neg.handle(req(enc(ident()) + text, csg=1)), 0x0200)


# ---------------------------------------------------------------------------- CHAP


def chap_policy(secrets: ChapSecrets) -> FakePolicy:
    return FakePolicy(targets={TARGET: FakeTarget(chap=secrets)})


def hexdec(value: str) -> bytes:
    assert value.startswith("0x")
    return bytes.fromhex(value[2:])


def start_chap(neg: LoginNegotiator, algorithms: str = "5") -> tuple[int, int, bytes]:
    s1 = neg.handle(req([*ident(), ("AuthMethod", "CHAP,None")], csg=0, nsg=1, transit=True))
    assert status(s1) == 0 and flags(s1)[0] is False
    assert keys(s1) == {"AuthMethod": "CHAP", "TargetPortalGroupTag": "7"}
    s2 = neg.handle(req([("CHAP_A", algorithms)], csg=0, nsg=1, transit=True))
    assert status(s2) == 0 and flags(s2)[0] is False
    k = keys(s2)
    return int(k["CHAP_A"]), int(k["CHAP_I"]), hexdec(k["CHAP_C"])


@pytest.mark.parametrize("alg", [5, 6, 7, 8])
def test_chap_each_algorithm(alg: int) -> None:
    neg, policy = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    chosen, ident_, challenge = start_chap(neg, str(alg))
    h = HASHES[alg]
    assert chosen == alg and len(challenge) == h().digest_size
    assert 0 <= ident_ <= 255
    r = h(bytes([ident_]) + SECRET.encode() + challenge).digest()
    s3 = neg.handle(req([("CHAP_N", USER), ("CHAP_R", "0x" + r.hex())], csg=0, nsg=1, transit=True))
    assert status(s3) == 0 and flags(s3) == (True, False, 0, 1)
    assert bytes(s3.response.data) == b""
    s4 = neg.handle(req([("HeaderDigest", "None")], csg=1, nsg=3, transit=True))
    assert s4.outcome is not None
    assert s4.outcome.auth_method == "CHAP" and s4.outcome.chap_username == USER
    assert policy.binds and policy.binds[0]["tsih"] == 0


def test_chap_first_supported_in_initiator_order() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    assert start_chap(neg, "99,7,5")[0] == 7
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    assert start_chap(neg, "5,6,7,8")[0] == 5


def test_chap_response_then_separate_transit() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    _, i, c = start_chap(neg)
    r = hashlib.md5(bytes([i]) + SECRET.encode() + c).digest()
    s = neg.handle(req([("CHAP_N", USER), ("CHAP_R", "0x" + r.hex())], csg=0))
    assert status(s) == 0 and flags(s)[0] is False
    s = neg.handle(req([], csg=0, nsg=3, transit=True))
    assert flags(s) == (True, False, 0, 3) and s.outcome is not None


def test_chap_base64_response() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    _, i, c = start_chap(neg, "7")
    r = hashlib.sha256(bytes([i]) + SECRET.encode() + c).digest()
    b64 = "0b" + base64.b64encode(r).decode()
    s = neg.handle(req([("CHAP_N", USER), ("CHAP_R", b64)], csg=0, nsg=1, transit=True))
    assert status(s) == 0 and flags(s)[0] is True


def test_chap_name_is_literal_even_if_hex_looking() -> None:
    name = "0x1234abcd"
    neg, _ = negotiator(chap_policy(ChapSecrets(name, SECRET)))
    _, i, c = start_chap(neg)
    r = hashlib.md5(bytes([i]) + SECRET.encode() + c).digest()
    s = neg.handle(req([("CHAP_N", name), ("CHAP_R", "0x" + r.hex())], csg=0, nsg=1, transit=True))
    assert status(s) == 0


@pytest.mark.parametrize(
    "mutate",
    ["password", "user", "short", "long", "garbage", "b64_oversize", "missing_r"],
)
def test_chap_bad_response(mutate: str) -> None:
    neg, policy = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    _, i, c = start_chap(neg)
    secret = "wrong-secret-000" if mutate == "password" else SECRET
    r = hashlib.md5(bytes([i]) + secret.encode() + c).digest()
    value = "0x" + r.hex()
    if mutate == "short":
        value = "0x" + r[:-1].hex()
    elif mutate == "long":
        value = "0x" + (r + b"\0").hex()
    elif mutate == "garbage":
        value = "0xzz"
    elif mutate == "b64_oversize":
        value = "0b" + base64.b64encode(r * 100).decode()
    pairs = [("CHAP_N", "mallory" if mutate == "user" else USER), ("CHAP_R", value)]
    if mutate == "missing_r":
        pairs = pairs[:1]
    assert_failed(neg.handle(req(pairs, csg=0, nsg=1, transit=True)), 0x0201)
    assert policy.binds == []


@pytest.mark.parametrize("algs", ["", "56", "abc", "5x"])
def test_chap_invalid_algorithm_list(algs: str) -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    neg.handle(req([*ident(), ("AuthMethod", "CHAP")], csg=0, nsg=1, transit=True))
    assert_failed(neg.handle(req([("CHAP_A", algs)], csg=0, nsg=1, transit=True)), 0x0201)


def test_auth_required_but_login_starts_in_operational_stage() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    assert_failed(neg.handle(req(ident(), csg=1, nsg=3, transit=True)), 0x0201)


def test_auth_required_but_initiator_offers_only_none() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    s = neg.handle(req([*ident(), ("AuthMethod", "None")], csg=0, nsg=1, transit=True))
    assert_failed(s, 0x0201)


def test_auth_required_but_no_auth_method_and_transit() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    assert_failed(neg.handle(req(ident(), csg=0, nsg=1, transit=True)), 0x0201)


def test_open_target_refuses_chap_only() -> None:
    neg, _ = negotiator()
    s = neg.handle(req([*ident(), ("AuthMethod", "CHAP")], csg=0, nsg=1, transit=True))
    assert_failed(s, 0x0201)


def test_chap_stalled_exchange() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    neg.handle(req([*ident(), ("AuthMethod", "CHAP")], csg=0, nsg=1, transit=True))
    assert_failed(neg.handle(req([], csg=0, nsg=1, transit=True)), 0x0201)


def test_chap_response_before_challenge() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    neg.handle(req([*ident(), ("AuthMethod", "CHAP")], csg=0))
    s = neg.handle(req([("CHAP_N", USER), ("CHAP_R", "0x00")], csg=0))
    assert_failed(s, 0x0201)


def _mutual_pairs(i: int, c: bytes, init_ident: int, init_chal: str) -> list[tuple[str, str]]:
    r = hashlib.md5(bytes([i]) + SECRET.encode() + c).digest()
    return [
        ("CHAP_N", USER),
        ("CHAP_R", "0x" + r.hex()),
        ("CHAP_I", str(init_ident)),
        ("CHAP_C", init_chal),
    ]


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_mutual_chap(encoding: str) -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET, TUSER, TSECRET)))
    _, i, c = start_chap(neg)
    my_chal = bytes(range(100, 116))
    text = "0x" + my_chal.hex() if encoding == "hex" else "0b" + base64.b64encode(my_chal).decode()
    s = neg.handle(req(_mutual_pairs(i, c, 42, text), csg=0, nsg=1, transit=True))
    assert status(s) == 0 and flags(s) == (True, False, 0, 1)
    k = keys(s)
    assert k["CHAP_N"] == TUSER
    assert hexdec(k["CHAP_R"]) == hashlib.md5(bytes([42]) + TSECRET.encode() + my_chal).digest()


def test_mutual_chap_reflected_challenge() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET, TUSER, TSECRET)))
    _, i, c = start_chap(neg)
    s = neg.handle(req(_mutual_pairs(i, c, i, "0x" + c.hex()), csg=0, nsg=1, transit=True))
    assert_failed(s, 0x0201)
    assert "CHAP_R" not in keys(s)


def test_mutual_chap_replayed_challenge_across_logins() -> None:
    shared = RecentChallenges()
    policy = chap_policy(ChapSecrets(USER, SECRET, TUSER, TSECRET))
    rand = Rand()
    my_chal = "0x" + bytes(range(16)).hex()
    results = []
    for _ in range(2):
        neg = LoginNegotiator(policy, random_bytes=rand, recent_challenges=shared)
        _, i, c = start_chap(neg)
        results.append(neg.handle(req(_mutual_pairs(i, c, 1, my_chal), csg=0, nsg=1, transit=True)))
    assert status(results[0]) == 0
    assert_failed(results[1], 0x0201)


def test_challenge_of_another_login_reflected() -> None:
    shared = RecentChallenges()
    policy = chap_policy(ChapSecrets(USER, SECRET, TUSER, TSECRET))
    rand = Rand()
    neg_a = LoginNegotiator(policy, random_bytes=rand, recent_challenges=shared)
    _, _, c_a = start_chap(neg_a)
    neg_b = LoginNegotiator(policy, random_bytes=rand, recent_challenges=shared)
    _, i_b, c_b = start_chap(neg_b)
    assert c_a != c_b
    s = neg_b.handle(req(_mutual_pairs(i_b, c_b, 1, "0x" + c_a.hex()), csg=0, nsg=1, transit=True))
    assert_failed(s, 0x0201)


def test_repeating_random_source_never_reuses_a_challenge() -> None:
    shared = RecentChallenges()
    policy = chap_policy(ChapSecrets(USER, SECRET))
    neg = LoginNegotiator(policy, random_bytes=lambda n: bytes(n), recent_challenges=shared)
    start_chap(neg)
    neg2 = LoginNegotiator(policy, random_bytes=lambda n: bytes(n), recent_challenges=shared)
    neg2.handle(req([*ident(), ("AuthMethod", "CHAP")], csg=0))
    assert_failed(neg2.handle(req([("CHAP_A", "5")], csg=0)), 0x0300)


@pytest.mark.parametrize(
    "secrets",
    [
        ChapSecrets(USER, SECRET, TUSER, SECRET),  # mutual secret == initiator secret
        ChapSecrets(USER, SECRET),  # mutual not configured
    ],
)
def test_mutual_chap_refused(secrets: ChapSecrets) -> None:
    neg, _ = negotiator(chap_policy(secrets))
    _, i, c = start_chap(neg)
    chal = "0x" + bytes(range(16)).hex()
    assert_failed(neg.handle(req(_mutual_pairs(i, c, 9, chal), csg=0, nsg=1, transit=True)), 0x0201)


@pytest.mark.parametrize(
    "ident_,chal",
    [
        ("256", "0x" + "11" * 16),
        ("x", "0x" + "11" * 16),
        ("1", "0x" + "11" * 1025),
        ("1", "0x"),
        ("1", "plain"),
    ],
)
def test_mutual_chap_bad_values(ident_: str, chal: str) -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET, TUSER, TSECRET)))
    _, i, c = start_chap(neg)
    r = hashlib.md5(bytes([i]) + SECRET.encode() + c).digest()
    pairs = [("CHAP_N", USER), ("CHAP_R", "0x" + r.hex()), ("CHAP_I", ident_), ("CHAP_C", chal)]
    assert_failed(neg.handle(req(pairs, csg=0, nsg=1, transit=True)), 0x0201)


def test_mutual_chap_needs_both_i_and_c() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET, TUSER, TSECRET)))
    _, i, c = start_chap(neg)
    r = hashlib.md5(bytes([i]) + SECRET.encode() + c).digest()
    pairs = [("CHAP_N", USER), ("CHAP_R", "0x" + r.hex()), ("CHAP_I", "3")]
    assert_failed(neg.handle(req(pairs, csg=0, nsg=1, transit=True)), 0x0201)


def test_chap_keys_after_success_are_an_error() -> None:
    neg, _ = negotiator(chap_policy(ChapSecrets(USER, SECRET)))
    _, i, c = start_chap(neg)
    r = hashlib.md5(bytes([i]) + SECRET.encode() + c).digest()
    neg.handle(req([("CHAP_N", USER), ("CHAP_R", "0x" + r.hex())], csg=0))
    step = neg.handle(req([("CHAP_A", "5")], csg=0))
    assert step.failed and status(step) >> 8 == 0x02


# ---------------------------------------------------------------------------- discovery


def test_discovery_without_auth() -> None:
    neg, policy = negotiator()
    s = neg.handle(
        req([*ident(None, "Discovery"), ("AuthMethod", "None,CHAP")], csg=0, nsg=1, transit=True)
    )
    assert keys(s) == {"AuthMethod": "None"}
    s = neg.handle(req([("MaxRecvDataSegmentLength", "32768")], csg=1, nsg=3, transit=True))
    assert s.outcome is not None and s.outcome.session_type == "Discovery"
    assert "TargetPortalGroupTag" not in keys(s)
    assert policy.binds[0]["target_name"] is None
    assert policy.binds[0]["session_type"] == "Discovery"


def test_discovery_with_chap() -> None:
    policy = FakePolicy(disc_chap=ChapSecrets("disc", "discovery-secret"))
    neg, _ = negotiator(policy)
    s = neg.handle(req([*ident(None, "Discovery"), ("AuthMethod", "CHAP,None")], csg=0))
    assert keys(s) == {"AuthMethod": "CHAP"}
    s = neg.handle(req([("CHAP_A", "6")], csg=0))
    k = keys(s)
    i, c = int(k["CHAP_I"]), hexdec(k["CHAP_C"])
    r = hashlib.sha1(bytes([i]) + b"discovery-secret" + c).digest()
    s = neg.handle(
        req([("CHAP_N", "disc"), ("CHAP_R", "0x" + r.hex())], csg=0, nsg=3, transit=True)
    )
    assert s.outcome is not None and s.outcome.chap_username == "disc"


def test_discovery_chap_required_skipping_security() -> None:
    policy = FakePolicy(disc_chap=ChapSecrets("disc", "discovery-secret"))
    neg, _ = negotiator(policy)
    assert_failed(neg.handle(req(ident(None, "Discovery"), csg=1, nsg=3, transit=True)), 0x0201)


# ---------------------------------------------------------------------------- property

_KEY_NAMES = [
    "InitiatorName",
    "TargetName",
    "SessionType",
    "AuthMethod",
    "CHAP_A",
    "CHAP_N",
    "CHAP_R",
    "CHAP_I",
    "CHAP_C",
    "HeaderDigest",
    "MaxBurstLength",
    "FirstBurstLength",
    "MaxRecvDataSegmentLength",
    "InitialR2T",
    "IFMarkInt",
    "SendTargets",
    "TargetAlias",
    "X-y",
]
_VALUES = st.one_of(
    st.sampled_from(
        [
            INITIATOR,
            TARGET,
            "Normal",
            "Discovery",
            "CHAP,None",
            "None",
            "5",
            "0x00",
            "0b",
            "Yes",
            "No",
            "Reject",
            "NotUnderstood",
            "Irrelevant",
            "",
            "512",
            "0x1000",
            "CRC32C,None",
        ]
    ),
    st.text(max_size=20),
)
_PAIRS = st.lists(st.tuples(st.sampled_from(_KEY_NAMES), _VALUES), max_size=8)
_REQ = st.tuples(
    st.one_of(_PAIRS.map(enc), st.binary(max_size=64)),
    st.integers(0, 3),
    st.integers(0, 3),
    st.booleans(),
    st.booleans(),
    st.sampled_from([0, 0, 5]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_REQ, min_size=1, max_size=6), st.booleans(), st.booleans())
def test_random_soup_never_raises(
    requests: list[tuple[bytes, int, int, bool, bool, int]], with_chap: bool, identify: bool
) -> None:
    policy = chap_policy(ChapSecrets(USER, SECRET, TUSER, TSECRET)) if with_chap else FakePolicy()
    neg = LoginNegotiator(policy, random_bytes=Rand(), recent_challenges=RecentChallenges())
    if identify:  # get past the first-request checks most of the time
        first = requests[0]
        requests[0] = (enc(ident()) + first[0], *first[1:])
    for data, csg, nsg, transit, cont, tsih in requests:
        step = neg.handle(req(data, csg=csg, nsg=nsg, transit=transit, cont=cont, tsih=tsih))
        rsp = step.response
        assert rsp.opcode == Opcode.LOGIN_RSP
        assert rsp.itt == 0x11 and rsp.isid == ISID
        st_class = rsp.bhs[36]
        assert step.failed == (st_class != 0)
        if step.outcome is not None:
            assert not step.failed and rsp.tsih == TSIH
            assert bytes(rsp.bhs[1:2])[0] & 0x83 == 0x83
        if step.failed:
            break
