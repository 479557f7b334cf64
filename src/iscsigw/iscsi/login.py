"""The target side of the iSCSI Login Phase (RFC 7143 §6, §11.12-11.13), sans-IO.

``LoginNegotiator.handle`` takes one Login Request and returns one Login Response (as a
``LoginStep``); sequence numbers are stamped by the connection. Peer errors never raise: they
become a response with a non-zero status class and ``failed=True``.

Decisions (see scsi-requirements.md §1.3-§1.5):

* Stages: CSG must be the current stage; T is set only when requested and only to the NSG
  requested; T and C together, CSG 2/3, NSG <= CSG are 0x0200. C=1 requests are buffered
  and answered with an empty response. Responses longer than 8192 bytes are sent with C=1.
* First complete request: InitiatorName (0x0207), SessionType (bad value 0x0209), TargetName
  for Normal (missing 0x0207, unknown 0x0203, ACL 0x0202). The first response of a Normal
  session carries TargetPortalGroupTag (and TargetAlias when set).
* Security: CHAP when the target (or discovery) has secrets, else AuthMethod=None. An
  initiator that starts at CSG=1, or offers no CHAP, when CHAP is required fails with 0x0201.
  CHAP keys outside the security stage are 0x0200.
* Keys: every offer is answered. Unknown keys, target-only keys, SendTargets, and (like LIO)
  operational keys sent in the security stage get NotUnderstood; normal-session keys in a
  discovery session get Irrelevant; bad values get Reject. A key sent twice in a login is
  0x0200 (InitiatorName/TargetName/SessionType/InitiatorAlias may be repeated unchanged).
  Our MaxRecvDataSegmentLength is declared in the first operational-stage response.
* The TSIH comes from ``policy.bind_session`` on the final response, after authentication.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from .._types import contiguous
from ..errors import LoginError
from .auth import ChapAuthenticator, ChapSecrets, RecentChallenges, default_recent_challenges
from .constants import FLAG_CONTINUE, FLAG_TRANSIT, Opcode, Stage
from .keys import (
    CHAP_KEYS,
    IRRELEVANT,
    KEYS,
    NOT_UNDERSTOOD,
    SPECIAL_VALUES,
    SessionParams,
    TargetSettings,
    apply,
    negotiate,
)
from .pdu import Pdu, login_response
from .text import TextFormatError, encode_text, parse_text

LOGIN_TEXT_MAX = 64 * 1024  # total text an initiator may send in one login
LOGIN_SEND_MAX = 8192  # login PDUs are limited to the default MaxRecvDataSegmentLength
LOGIN_REQUESTS_MAX = 128
NAME_MAX = 223

_IDENTITY_KEYS = frozenset({"InitiatorName", "InitiatorAlias", "TargetName", "SessionType"})


class TargetView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def alias(self) -> str: ...
    @property
    def tpgt(self) -> int: ...
    def allows(self, initiator_name: str) -> bool: ...
    def chap_for(self, initiator_name: str) -> ChapSecrets | None: ...


class LoginPolicy(Protocol):
    @property
    def settings(self) -> TargetSettings: ...
    def find_target(self, name: str) -> TargetView | None: ...
    def discovery_chap(self, initiator_name: str) -> ChapSecrets | None: ...
    def bind_session(
        self,
        *,
        initiator_name: str,
        isid: int,
        tsih: int,
        target_name: str | None,
        session_type: str,
    ) -> int: ...


@dataclass(slots=True)
class LoginOutcome:
    session_type: str  # "Discovery" | "Normal"
    initiator_name: str
    initiator_alias: str
    target: TargetView | None
    isid: int
    tsih: int
    cid: int
    params: SessionParams
    auth_method: str
    chap_username: str | None


@dataclass(slots=True)
class LoginStep:
    response: Pdu
    outcome: LoginOutcome | None = None
    failed: bool = False


def _err(status: int, message: str) -> LoginError:
    return LoginError(status >> 8, status & 0xFF, message)


def valid_iscsi_name(name: str) -> bool:
    """iqn./eui./naa. names (case-insensitive), at most 223 bytes, no controls or spaces."""
    if not name or len(name.encode()) > NAME_MAX:
        return False
    if name[:4].lower() not in ("iqn.", "eui.", "naa."):
        return False
    return all(ch > " " and ch != "\x7f" for ch in name)


class LoginNegotiator:
    """One connection's login. Feed every Login Request to ``handle``."""

    def __init__(
        self,
        policy: LoginPolicy,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        recent_challenges: RecentChallenges | None = None,
    ) -> None:
        self._policy = policy
        self._settings = policy.settings
        self._random = random_bytes
        self._recent = (
            recent_challenges if recent_challenges is not None else default_recent_challenges()
        )
        self._stage: int | None = None
        self._finished = False
        self._requests = 0
        self._ids: tuple[int, int, int] | None = None  # ISID, TSIH, CID
        self._partial = bytearray()
        self._text_total = 0
        self._pending_out = b""
        self._pending_ready = False
        # identity (set by the first complete request)
        self._identified = False
        self._identity: dict[str, str] = {}
        self._session_type = "Normal"
        self._initiator_name = ""
        self._initiator_alias = ""
        self._target: TargetView | None = None
        # security
        self._chap_secrets: ChapSecrets | None = None
        self._auth_method: str | None = None
        self._chap: ChapAuthenticator | None = None
        # negotiation
        self._seen: set[str] = set()
        self._params = SessionParams()
        self._declared_mrdsl = False

    # ------------------------------------------------------------------ public
    def handle(self, pdu: Pdu) -> LoginStep:
        try:
            return self._handle(pdu)
        except LoginError as exc:
            self._finished = True
            status = ((exc.status_class & 0xFF) << 8) | (exc.status_detail & 0xFF)
            stage = self._stage if self._stage is not None else (pdu.flags >> 2) & 3
            rsp = login_response(
                pdu,
                transit=False,
                csg=stage,
                nsg=0,
                status=status,
                tsih=pdu.tsih,
                data=b"",
            )
            return LoginStep(response=rsp, failed=True)

    # ------------------------------------------------------------------ request checks
    def _handle(self, pdu: Pdu) -> LoginStep:
        if self._finished:
            raise _err(0x020B, "login request after the login ended")
        if pdu.opcode != Opcode.LOGIN_REQ:
            raise _err(0x020B, "not a Login Request")
        self._requests += 1
        if self._requests > LOGIN_REQUESTS_MAX:
            raise _err(0x0200, "too many login requests")
        bhs = pdu.bhs
        version_max, version_min = bhs[2], bhs[3]
        if version_min > 0 or version_max < version_min:
            raise _err(0x0205, f"unsupported version {version_min}-{version_max}")
        flags = pdu.flags
        transit = bool(flags & FLAG_TRANSIT)
        cont = bool(flags & FLAG_CONTINUE)
        csg = (flags >> 2) & 3
        nsg = flags & 3
        if transit and cont:
            raise _err(0x0200, "T and C both set")
        if csg not in (Stage.SECURITY, Stage.OPERATIONAL):
            raise _err(0x0200, f"invalid CSG {csg}")
        if transit and (nsg not in (Stage.OPERATIONAL, Stage.FULL_FEATURE) or nsg <= csg):
            raise _err(0x0200, f"invalid transition {csg}->{nsg}")
        ids = (pdu.isid, pdu.tsih, pdu.cid)
        if self._ids is None:
            self._ids = ids
        elif ids != self._ids:
            raise _err(0x0200, "ISID/TSIH/CID changed during login")
        if self._stage is None:
            self._stage = csg
        elif csg != self._stage:
            raise _err(0x0200, f"CSG {csg} but the login is in stage {self._stage}")

        if self._pending_out:
            # The initiator acknowledges a C=1 response of ours with an empty request.
            if pdu.data_length or cont:
                raise _err(0x0200, "text sent while the target's response is continued")
            chunk, self._pending_out = self._pending_out, b""
            return self._respond(pdu, chunk, self._pending_ready)

        data = bytes(contiguous(pdu.data))
        self._text_total += len(data)
        if self._text_total > LOGIN_TEXT_MAX:
            raise _err(0x0302, "login text too long")
        self._partial += data
        if cont:
            return LoginStep(self._response(pdu, transit=False, nsg=0, data=b""))
        raw = bytes(self._partial)
        self._partial.clear()
        try:
            pairs = parse_text(raw)
        except TextFormatError as exc:
            raise _err(0x0200, f"malformed login text: {exc}") from None
        out: list[tuple[str, str]] = []
        if not self._identified:
            self._identify(pairs, csg, out)
        ready = self._process(pairs, csg, transit, out)
        if csg == Stage.OPERATIONAL and not self._declared_mrdsl:
            out.append(
                ("MaxRecvDataSegmentLength", str(self._settings.max_recv_data_segment_length))
            )
            self._declared_mrdsl = True
            self._params.max_recv_data_segment_length = self._settings.max_recv_data_segment_length
        # A key we declared (TargetPortalGroupTag, TargetAlias) may also have been sent by the
        # initiator: the declaration answers it, never send a key twice.
        answered: set[str] = set()
        unique: list[tuple[str, str]] = []
        for key, value in out:
            if key not in answered:
                answered.add(key)
                unique.append((key, value))
        return self._respond(pdu, encode_text(unique), ready)

    # ------------------------------------------------------------------ first request
    def _identify(self, pairs: list[tuple[str, str]], csg: int, out: list[tuple[str, str]]) -> None:
        keys = dict(pairs)
        initiator = keys.get("InitiatorName")
        if initiator is None:
            raise _err(0x0207, "InitiatorName missing")
        if not valid_iscsi_name(initiator):
            raise _err(0x0200, "invalid InitiatorName")
        session_type = keys.get("SessionType", "Normal")
        if session_type not in ("Normal", "Discovery"):
            raise _err(0x0209, f"unsupported SessionType {session_type[:32]!r}")
        self._initiator_name = initiator
        self._initiator_alias = keys.get("InitiatorAlias", "")
        self._session_type = session_type
        policy = self._policy
        if session_type == "Normal":
            target_name = keys.get("TargetName")
            if target_name is None:
                raise _err(0x0207, "TargetName missing")
            target = policy.find_target(target_name)
            if target is None:
                raise _err(0x0203, "target not found")
            if not target.allows(initiator):
                raise _err(0x0202, "initiator not allowed")
            self._target = target
            self._chap_secrets = target.chap_for(initiator)
            out.append(("TargetPortalGroupTag", str(target.tpgt)))
            if target.alias:
                out.append(("TargetAlias", target.alias))
        else:
            self._chap_secrets = policy.discovery_chap(initiator)
        if self._chap_secrets is not None and csg != Stage.SECURITY:
            raise _err(0x0201, "authentication required but the login skips the security stage")
        for name in _IDENTITY_KEYS:
            if name in keys:
                self._identity[name] = keys[name]
        self._identified = True

    # ------------------------------------------------------------------ keys
    def _process(
        self, pairs: list[tuple[str, str]], csg: int, transit: bool, out: list[tuple[str, str]]
    ) -> bool:
        """Answer the keys of one complete request; return whether we may leave the stage."""
        chap_keys: dict[str, str] = {}
        auth_offer: str | None = None
        fbl_index: int | None = None
        for key, value in pairs:
            if key in _IDENTITY_KEYS:
                if self._identity.get(key, value) != value:
                    raise _err(0x0200, f"{key} changed during login")
                self._identity[key] = value
                continue
            if key in self._seen:
                raise _err(0x0200, f"key {key} sent twice")
            self._seen.add(key)
            rule = KEYS.get(key)
            if rule is None:
                out.append((key, NOT_UNDERSTOOD))
                continue
            if rule.phase == "security":
                if csg != Stage.SECURITY:
                    raise _err(0x0200, f"{key} outside the security stage")
                if key in CHAP_KEYS:
                    chap_keys[key] = value
                else:
                    auth_offer = value
                continue
            if value in SPECIAL_VALUES:
                continue  # an answer, not an offer; we proposed nothing
            if rule.sender == "target" or rule.phase == "ffp":
                out.append((key, NOT_UNDERSTOOD))
                continue
            if csg == Stage.SECURITY:
                out.append((key, NOT_UNDERSTOOD))  # as LIO: operational keys wait for stage 1
                continue
            if self._session_type == "Discovery" and rule.session_types == "normal":
                out.append((key, IRRELEVANT))
                continue
            result = negotiate(rule, value, self._settings)
            if key == "FirstBurstLength":
                fbl_index = len(out)
            out.append((key, result.answer))
            apply(self._params, key, result.value)
            if key == "MaxRecvDataSegmentLength":
                # answered with our own declaration (or rejected: then we declare nothing)
                self._declared_mrdsl = True
                if result.value is not None:
                    self._params.max_recv_data_segment_length = (
                        self._settings.max_recv_data_segment_length
                    )
        if fbl_index is not None:
            self._clamp_first_burst(out, fbl_index)
        if csg != Stage.SECURITY:
            return True
        return self._security(auth_offer, chap_keys, transit, out)

    def _clamp_first_burst(self, out: list[tuple[str, str]], index: int) -> None:
        params = self._params
        if params.first_burst_length > params.max_burst_length:
            params.first_burst_length = params.max_burst_length
            out[index] = ("FirstBurstLength", str(params.max_burst_length))

    def _security(
        self,
        auth_offer: str | None,
        chap_keys: dict[str, str],
        transit: bool,
        out: list[tuple[str, str]],
    ) -> bool:
        required = self._chap_secrets is not None
        if auth_offer is not None:
            offered = auth_offer.split(",")
            if required and "CHAP" in offered:
                self._auth_method = "CHAP"
            elif not required and "None" in offered:
                self._auth_method = "None"
            else:
                raise _err(0x0201, f"no acceptable AuthMethod in {auth_offer[:64]!r}")
            out.append(("AuthMethod", self._auth_method))
        if chap_keys:
            if self._auth_method != "CHAP":
                raise _err(0x0201, "CHAP keys without AuthMethod=CHAP")
            if self._chap is None:
                assert self._chap_secrets is not None
                self._chap = ChapAuthenticator(
                    self._chap_secrets, random_bytes=self._random, recent=self._recent
                )
            out.extend(self._chap.step(chap_keys))
        chap_done = self._chap is not None and self._chap.done
        if not chap_keys and self._auth_method == "CHAP" and auth_offer is None and not chap_done:
            raise _err(0x0201, "CHAP exchange stalled")
        if not required or chap_done:
            return True
        if transit and self._auth_method is None:
            raise _err(0x0201, "authentication required")
        return False

    # ------------------------------------------------------------------ responses
    def _response(
        self,
        req: Pdu,
        *,
        transit: bool,
        nsg: int,
        data: bytes,
        tsih: int | None = None,
        cont: bool = False,
    ) -> Pdu:
        assert self._stage is not None
        return login_response(
            req,
            transit=transit,
            csg=self._stage,
            nsg=nsg,
            status=0,
            tsih=req.tsih if tsih is None else tsih,
            data=data,
            cont=cont,
        )

    def _respond(self, req: Pdu, data: bytes, ready: bool) -> LoginStep:
        if len(data) > LOGIN_SEND_MAX:
            self._pending_out = data[LOGIN_SEND_MAX:]
            self._pending_ready = ready
            return LoginStep(
                self._response(req, transit=False, nsg=0, data=data[:LOGIN_SEND_MAX], cont=True)
            )
        flags = req.flags
        transit = bool(flags & FLAG_TRANSIT) and ready
        if not transit:
            return LoginStep(self._response(req, transit=False, nsg=0, data=data))
        nsg = flags & 3
        if nsg != Stage.FULL_FEATURE:
            rsp = self._response(req, transit=True, nsg=nsg, data=data)
            self._stage = nsg
            return LoginStep(rsp)
        outcome = self._complete(req)
        rsp = self._response(req, transit=True, nsg=nsg, data=data, tsih=outcome.tsih)
        self._stage = nsg
        self._finished = True
        return LoginStep(rsp, outcome=outcome)

    def _complete(self, req: Pdu) -> LoginOutcome:
        if self._chap_secrets is not None and (self._chap is None or not self._chap.done):
            raise _err(0x0201, "authentication required")
        target = self._target
        tsih = self._policy.bind_session(
            initiator_name=self._initiator_name,
            isid=req.isid,
            tsih=req.tsih,
            target_name=target.name if target is not None else None,
            session_type=self._session_type,
        )
        if not 0 < tsih <= 0xFFFF:
            raise _err(0x0300, "no TSIH")
        params = replace(self._params)
        if params.first_burst_length > params.max_burst_length:
            params.first_burst_length = params.max_burst_length
        chap = self._chap
        return LoginOutcome(
            session_type=self._session_type,
            initiator_name=self._initiator_name,
            initiator_alias=self._initiator_alias,
            target=target,
            isid=req.isid,
            tsih=tsih,
            cid=req.cid,
            params=params,
            auth_method="CHAP" if chap is not None else "None",
            chap_username=chap.username if chap is not None else None,
        )
