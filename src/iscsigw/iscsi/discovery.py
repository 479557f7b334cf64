"""Text Requests in Full Feature Phase: SendTargets (RFC 7143 App. C, §13.3), sans-IO.

* ``SendTargets=All``: every target the initiator may see (discovery and normal sessions).
* ``SendTargets=`` (empty): the session's target in a normal session.
* ``SendTargets=<iSCSI name>``: that target.
* Other values are answered ``SendTargets=Reject``; unknown keys ``NotUnderstood``; other
  known (login-only) keys ``Reject``. Malformed text is answered with a Reject PDU.

Long answers are split into PDUs of at most ``max_send`` bytes with C=1, F=0 and a fresh
Target Transfer Tag; the initiator fetches the rest with empty Text Requests carrying that
TTT. A Text Request with C=1 (the initiator's text continues) is buffered and answered with
an empty response with a fresh TTT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .._types import contiguous
from ..errors import PduRejected
from .constants import FLAG_CONTINUE, FLAG_FINAL, RESERVED_TAG, Opcode, RejectReason
from .keys import KEYS, NOT_UNDERSTOOD, REJECT
from .pdu import Pdu, text_response
from .text import TextFormatError, encode_text, parse_text

TEXT_IN_MAX = 64 * 1024  # total text of one (continued) Text Request


class SendTargetsPolicy(Protocol):
    def send_targets(
        self, initiator_name: str, which: str, current_target: str | None
    ) -> list[tuple[str, list[str]]]: ...


def is_iscsi_name(value: str) -> bool:
    return len(value) > 4 and value[:4].lower() in ("iqn.", "eui.", "naa.")


def format_target_address(address: str) -> str:
    """Normalise ``host:port,tpgt``: put a bare IPv6 host in brackets."""
    if address.startswith("["):
        return address
    hostport, comma, tpgt = address.rpartition(",")
    if not comma:
        hostport, tpgt = address, ""
    host, colon, port = hostport.rpartition(":")
    if colon and ":" in host and port.isdigit():
        hostport = f"[{host}]:{port}"
    elif not colon and ":" in hostport:
        hostport = f"[{hostport}]"
    return f"{hostport},{tpgt}" if comma else hostport


class TextExchange:
    """Text Requests of one connection after login."""

    def __init__(
        self,
        policy: SendTargetsPolicy,
        *,
        initiator_name: str,
        session_type: str,
        target_name: str | None,
    ) -> None:
        self._policy = policy
        self._initiator = initiator_name
        self._session_type = session_type
        self._target_name = target_name
        self._itt: int | None = None
        self._ttt = RESERVED_TAG  # the TTT the initiator must echo to continue
        self._in = bytearray()
        self._out = b""

    def _reset(self) -> None:
        self._itt = None
        self._ttt = RESERVED_TAG
        self._in.clear()
        self._out = b""

    def handle(self, pdu: Pdu, max_send: int, next_ttt: Callable[[], int]) -> Pdu:
        bhs = bytes(pdu.bhs[:48])
        if pdu.opcode != Opcode.TEXT_REQ:
            raise PduRejected(RejectReason.PROTOCOL_ERROR, "not a Text Request", bhs)
        flags = pdu.flags
        final = bool(flags & FLAG_FINAL)
        cont = bool(flags & FLAG_CONTINUE)
        if final and cont:
            raise PduRejected(RejectReason.PROTOCOL_ERROR, "Text Request with F and C", bhs)
        itt, ttt = pdu.itt, pdu.ttt
        if ttt == RESERVED_TAG:
            self._reset()  # a new request resets any exchange in progress
        elif ttt != self._ttt or itt != self._itt:
            self._reset()
            raise PduRejected(RejectReason.INVALID_PDU_FIELD, "unexpected Target Transfer Tag", bhs)
        self._itt = itt
        max_send = max(1, max_send)

        if self._out:
            if pdu.data_length or cont:
                self._reset()
                raise PduRejected(
                    RejectReason.PROTOCOL_ERROR, "text sent while our response continues", bhs
                )
            return self._emit(itt, final, max_send, next_ttt)

        if len(self._in) + pdu.data_length > TEXT_IN_MAX:
            self._reset()
            raise PduRejected(RejectReason.PROTOCOL_ERROR, "text request too long", bhs)
        self._in += contiguous(pdu.data)
        if cont:
            self._ttt = _fresh(next_ttt)
            return text_response(itt, self._ttt, b"", final=False, cont=False)
        raw = bytes(self._in)
        self._in.clear()
        try:
            pairs = parse_text(raw)
        except TextFormatError as exc:
            self._reset()
            raise PduRejected(RejectReason.PROTOCOL_ERROR, f"malformed text: {exc}", bhs) from None
        self._out = encode_text(self._answer(pairs))
        return self._emit(itt, final, max_send, next_ttt)

    def _emit(self, itt: int, final: bool, max_send: int, next_ttt: Callable[[], int]) -> Pdu:
        chunk, rest = self._out[:max_send], self._out[max_send:]
        self._out = rest
        if rest:
            self._ttt = _fresh(next_ttt)
            return text_response(itt, self._ttt, chunk, final=False, cont=True)
        if not final:
            # The initiator has more to say (F=0): keep the exchange open.
            self._ttt = _fresh(next_ttt)
            return text_response(itt, self._ttt, chunk, final=False, cont=False)
        self._reset()
        return text_response(itt, RESERVED_TAG, chunk, final=True, cont=False)

    def _answer(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key, value in pairs:
            if key == "SendTargets":
                listing = self._send_targets(value)
                if listing is None:
                    out.append((key, REJECT))
                else:
                    out.extend(listing)
            elif key in KEYS:
                out.append((key, REJECT))  # login-only keys are not renegotiated here
            else:
                out.append((key, NOT_UNDERSTOOD))
        return out

    def _send_targets(self, value: str) -> list[tuple[str, str]] | None:
        if value == "All":
            which, current = "All", self._target_name
        elif value == "":
            if self._session_type != "Normal":
                return []
            which, current = "", self._target_name
        elif is_iscsi_name(value):
            which, current = value, self._target_name
        else:
            return None
        out: list[tuple[str, str]] = []
        for name, addresses in self._policy.send_targets(self._initiator, which, current):
            out.append(("TargetName", name))
            out.extend(("TargetAddress", format_target_address(a)) for a in addresses)
        return out


def _fresh(next_ttt: Callable[[], int]) -> int:
    ttt = next_ttt() & 0xFFFFFFFF
    if ttt == RESERVED_TAG:
        ttt = next_ttt() & 0xFFFFFFFF
    return ttt
