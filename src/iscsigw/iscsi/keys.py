"""The login/text keys of RFC 7143 §13 as a declarative table, and their negotiation.

The target is always the acceptor here: the initiator offers, we answer with the result of
the key's function applied to its offer and our value (``TargetSettings``). Values that are
malformed or out of range are answered ``Reject`` (RFC 7143 §6.2.1) and leave the RFC default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# special answers (RFC 7143 §6.2)
NOT_UNDERSTOOD = "NotUnderstood"
REJECT = "Reject"
IRRELEVANT = "Irrelevant"
SPECIAL_VALUES = frozenset({NOT_UNDERSTOOD, REJECT, IRRELEVANT})

MAX_DSL = (1 << 24) - 1


@dataclass(frozen=True)
class KeyRule:
    """One key.

    kind:      "list" | "bool" | "number" | "declarative" | "string" | "auth"
    function:  "min" | "max" | "or" | "and" | "first" | "declare" | "none"
    phase:     "security" | "operational" | "declarative" (any login stage) | "ffp"
    sender:    who may send it: "initiator" | "target" | "both"
    """

    name: str
    kind: str
    function: str
    range: tuple[int, int] | None = None
    default: str = ""
    scope: str = "session"
    session_types: str = "both"  # "normal": Irrelevant in a discovery session
    leading_only: bool = False
    phase: str = "operational"
    sender: str = "both"
    fixed_answer: str | None = None  # obsolete keys answered with a constant (markers)


def _num(
    name: str,
    lo: int,
    hi: int,
    default: int,
    function: str,
    *,
    scope: str = "session",
    session_types: str = "both",
    leading_only: bool = False,
) -> KeyRule:
    return KeyRule(
        name,
        "number",
        function,
        (lo, hi),
        str(default),
        scope=scope,
        session_types=session_types,
        leading_only=leading_only,
    )


KEYS: dict[str, KeyRule] = {
    r.name: r
    for r in (
        # security stage
        KeyRule(
            "AuthMethod", "list", "first", default="None", scope="connection", phase="security"
        ),
        KeyRule("CHAP_A", "auth", "none", scope="connection", phase="security"),
        KeyRule("CHAP_I", "auth", "none", scope="connection", phase="security"),
        KeyRule("CHAP_C", "auth", "none", scope="connection", phase="security"),
        KeyRule("CHAP_N", "auth", "none", scope="connection", phase="security"),
        KeyRule("CHAP_R", "auth", "none", scope="connection", phase="security"),
        # declarations (any login stage)
        KeyRule("InitiatorName", "declarative", "declare", phase="declarative", sender="initiator"),
        KeyRule(
            "InitiatorAlias", "declarative", "declare", phase="declarative", sender="initiator"
        ),
        KeyRule("TargetName", "declarative", "declare", phase="declarative"),
        KeyRule(
            "SessionType",
            "declarative",
            "declare",
            default="Normal",
            leading_only=True,
            phase="declarative",
            sender="initiator",
        ),
        KeyRule("TargetAlias", "declarative", "declare", phase="declarative", sender="target"),
        KeyRule("TargetAddress", "declarative", "declare", phase="declarative", sender="target"),
        KeyRule(
            "TargetPortalGroupTag",
            "declarative",
            "declare",
            range=(0, 65535),
            phase="declarative",
            sender="target",
        ),
        # operational stage
        KeyRule("HeaderDigest", "list", "first", default="None", scope="connection"),
        KeyRule("DataDigest", "list", "first", default="None", scope="connection"),
        _num("MaxConnections", 1, 65535, 1, "min", session_types="normal", leading_only=True),
        KeyRule(
            "InitialR2T", "bool", "or", default="Yes", session_types="normal", leading_only=True
        ),
        KeyRule(
            "ImmediateData", "bool", "and", default="Yes", session_types="normal", leading_only=True
        ),
        _num("MaxRecvDataSegmentLength", 512, MAX_DSL, 8192, "declare", scope="connection"),
        _num(
            "MaxBurstLength", 512, MAX_DSL, 262144, "min", session_types="normal", leading_only=True
        ),
        _num(
            "FirstBurstLength",
            512,
            MAX_DSL,
            65536,
            "min",
            session_types="normal",
            leading_only=True,
        ),
        _num("DefaultTime2Wait", 0, 3600, 2, "max", leading_only=True),
        _num("DefaultTime2Retain", 0, 3600, 20, "min", leading_only=True),
        _num("MaxOutstandingR2T", 1, 65535, 1, "min", session_types="normal", leading_only=True),
        KeyRule(
            "DataPDUInOrder", "bool", "or", default="Yes", session_types="normal", leading_only=True
        ),
        KeyRule(
            "DataSequenceInOrder",
            "bool",
            "or",
            default="Yes",
            session_types="normal",
            leading_only=True,
        ),
        _num("ErrorRecoveryLevel", 0, 2, 0, "min", leading_only=True),
        # obsolete in RFC 7143: markers are always off
        KeyRule("IFMarker", "bool", "and", default="No", scope="connection", fixed_answer="No"),
        KeyRule("OFMarker", "bool", "and", default="No", scope="connection", fixed_answer="No"),
        KeyRule("IFMarkInt", "string", "none", scope="connection", fixed_answer=REJECT),
        KeyRule("OFMarkInt", "string", "none", scope="connection", fixed_answer=REJECT),
        # full feature phase only
        KeyRule("SendTargets", "string", "none", phase="ffp", sender="initiator"),
    )
}

SECURITY_KEYS = frozenset(k for k, r in KEYS.items() if r.phase == "security")
CHAP_KEYS = frozenset(k for k, r in KEYS.items() if r.kind == "auth")


@dataclass(frozen=True, slots=True)
class TargetSettings:
    """Our side's offers (what we accept / would like)."""

    max_recv_data_segment_length: int = 262144
    max_burst_length: int = 1048576
    first_burst_length: int = 262144
    initial_r2t: bool = True
    immediate_data: bool = True
    max_outstanding_r2t: int = 1
    default_time2wait: int = 2
    default_time2retain: int = 0
    max_connections: int = 1
    error_recovery_level: int = 0
    header_digests: tuple[str, ...] = ("CRC32C", "None")  # what we accept
    data_digests: tuple[str, ...] = ("CRC32C", "None")
    cmdsn_depth: int = 128


@dataclass(slots=True)
class SessionParams:
    """Result of negotiation; RFC defaults until a key is negotiated."""

    header_digest: bool = False
    data_digest: bool = False
    max_recv_data_segment_length: int = 8192  # what WE may receive (our declaration)
    max_xmit_data_segment_length: int = 8192  # what the INITIATOR declared it receives
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    initial_r2t: bool = True
    immediate_data: bool = True
    max_outstanding_r2t: int = 1
    default_time2wait: int = 2
    default_time2retain: int = 20
    error_recovery_level: int = 0
    max_connections: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True


@dataclass(slots=True)
class Negotiated:
    """The answer to one offered key and, unless rejected, its effect on SessionParams."""

    answer: str
    value: int | bool | str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def parse_number(value: str) -> int:
    """A numerical value: decimal or 0x-hex (RFC 7143 §6.1). Raises ValueError."""
    if not value or len(value) > 20:
        raise ValueError("bad number")
    if value[:2] in ("0x", "0X"):
        digits = value[2:]
        if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise ValueError("bad hex number")
        return int(digits, 16)
    if not value.isascii() or not value.isdigit():
        raise ValueError("bad decimal number")
    return int(value)


def parse_bool(value: str) -> bool:
    if value == "Yes":
        return True
    if value == "No":
        return False
    raise ValueError("not Yes/No")


def _ours(rule: KeyRule, settings: TargetSettings) -> int | bool | tuple[str, ...]:
    name = rule.name
    if name == "HeaderDigest":
        return settings.header_digests
    if name == "DataDigest":
        return settings.data_digests
    if name == "AuthMethod":
        return ()
    if name in ("DataPDUInOrder", "DataSequenceInOrder"):
        return True  # we want in-order data; OR makes it so
    if name in ("IFMarker", "OFMarker"):
        return False
    attr = {
        "MaxConnections": "max_connections",
        "InitialR2T": "initial_r2t",
        "ImmediateData": "immediate_data",
        "MaxRecvDataSegmentLength": "max_recv_data_segment_length",
        "MaxBurstLength": "max_burst_length",
        "FirstBurstLength": "first_burst_length",
        "DefaultTime2Wait": "default_time2wait",
        "DefaultTime2Retain": "default_time2retain",
        "MaxOutstandingR2T": "max_outstanding_r2t",
        "ErrorRecoveryLevel": "error_recovery_level",
    }[name]
    value: int | bool = getattr(settings, attr)
    return value


def negotiate(rule: KeyRule, offered: str, settings: TargetSettings) -> Negotiated:
    """Answer one operational key the initiator offered (it is the proposer)."""
    if rule.fixed_answer is not None:
        if rule.kind == "bool":
            try:
                parse_bool(offered)
            except ValueError:
                return Negotiated(REJECT)
            return Negotiated(rule.fixed_answer, False)
        return Negotiated(rule.fixed_answer)
    ours = _ours(rule, settings)
    try:
        if rule.kind == "bool":
            theirs_b = parse_bool(offered)
            assert isinstance(ours, bool)
            result_b = (theirs_b or ours) if rule.function == "or" else (theirs_b and ours)
            return Negotiated("Yes" if result_b else "No", result_b)
        if rule.kind == "number":
            n = parse_number(offered)
            assert rule.range is not None and isinstance(ours, int)
            lo, hi = rule.range
            if not lo <= n <= hi:
                return Negotiated(REJECT)
            if rule.function == "min":
                result = min(n, ours)
            elif rule.function == "max":
                result = max(n, ours)
            else:  # declarative: the answer is our own declaration, the value theirs
                return Negotiated(str(ours), n)
            return Negotiated(str(result), result)
        if rule.kind == "list":
            assert isinstance(ours, tuple)
            values = offered.split(",")
            if any(not v for v in values):
                return Negotiated(REJECT)
            for v in values:
                if v in ours:
                    return Negotiated(v, v)
            return Negotiated(REJECT)
    except ValueError:
        return Negotiated(REJECT)
    return Negotiated(REJECT)


def apply(params: SessionParams, name: str, value: int | bool | str | None) -> None:
    """Record a negotiated (non-rejected) value in SessionParams."""
    if value is None:
        return
    if name == "HeaderDigest":
        params.header_digest = value == "CRC32C"
    elif name == "DataDigest":
        params.data_digest = value == "CRC32C"
    elif name == "MaxRecvDataSegmentLength":
        assert isinstance(value, int)
        params.max_xmit_data_segment_length = value
    else:
        attr = {
            "MaxConnections": "max_connections",
            "InitialR2T": "initial_r2t",
            "ImmediateData": "immediate_data",
            "MaxBurstLength": "max_burst_length",
            "FirstBurstLength": "first_burst_length",
            "DefaultTime2Wait": "default_time2wait",
            "DefaultTime2Retain": "default_time2retain",
            "MaxOutstandingR2T": "max_outstanding_r2t",
            "ErrorRecoveryLevel": "error_recovery_level",
            "DataPDUInOrder": "data_pdu_in_order",
            "DataSequenceInOrder": "data_sequence_in_order",
        }.get(name)
        if attr is not None:
            setattr(params, attr, value)
