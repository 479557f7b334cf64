"""Malformed and hostile input over real sockets: the gateway must refuse it on that connection
only (Reject, login failure, or closing the connection) and keep serving everyone else.

Every test opens a logged-in session *before* sending the bad input and checks afterwards
that (a) the gateway process is alive, (b) that session still answers a NOP-Out and a TEST
UNIT READY, (c) a new libiscsi client (``iscsi-inq``) works, and (d) no Python traceback was
logged.  PDUs are built by hand (``rawclient.bhs``), independently of ``iscsigw.iscsi``.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from integration.harness import Gateway, require_tool, run_tool
from integration.rawclient import (
    OP_LOGIN_RSP,
    OP_NOP_IN,
    OP_NOP_OUT,
    OP_REJECT,
    OP_SCSI_CMD,
    OP_SNACK,
    RESERVED_TAG,
    STAGE_OPERATIONAL,
    STAGE_SECURITY,
    TEST_INITIATOR,
    ConnectionClosed,
    RawConnection,
    RxPdu,
    Session,
    bhs,
    encode_keys,
    login_bhs,
    random_isid,
)

CLOSE_TIMEOUT = 10.0


@pytest.fixture
def bystander(module_gateway: Gateway) -> Iterator[Session]:
    """A session logged in before the bad input arrives; it must survive it."""
    s = module_gateway.login()
    assert s.test_unit_ready().status == 0
    yield s
    s.close()


def assert_healthy(gw: Gateway, bystander: Session) -> None:
    gw.assert_alive()
    bystander.nop(b"still there?")
    assert bystander.test_unit_ready().status == 0
    require_tool("iscsi-inq")
    res = run_tool(["iscsi-inq", gw.lun_url()], timeout=30)
    assert res.returncode == 0, res.describe()
    gw.assert_no_tracebacks()


def raw(gw: Gateway) -> RawConnection:
    return RawConnection(gw.host, gw.port, timeout=CLOSE_TIMEOUT)


def expect_refused(conn: RawConnection) -> list[RxPdu]:
    """The target must close the connection within CLOSE_TIMEOUT; it may send a Reject or a
    failed Login Response first, but nothing else."""
    try:
        got = conn.wait_closed(CLOSE_TIMEOUT)
    except TimeoutError as e:
        pytest.fail(f"the gateway kept a connection open after bad input: {e}")
    for pdu in got:
        if pdu.opcode == OP_LOGIN_RSP:
            assert pdu.bhs[36] != 0, f"bad input got a successful login response: {pdu!r}"
        else:
            assert pdu.opcode == OP_REJECT, f"unexpected answer to bad input: {pdu!r}"
    return got


def first_login_keys(**override: str | None) -> bytes:
    keys: dict[str, str | None] = {
        "InitiatorName": TEST_INITIATOR,
        "TargetName": "iqn.2000-01.org.example:whatever",
        "SessionType": "Normal",
        "AuthMethod": "None",
    }
    keys.update(override)
    return encode_keys({k: v for k, v in keys.items() if v is not None})


# -- before login -------------------------------------------------------------------------------


def test_garbage_bytes(module_gateway: Gateway, bystander: Session) -> None:
    with raw(module_gateway) as c:
        junk = bytearray(os.urandom(4096))
        junk[0] = 0x7F  # not a Login Request (0x03/0x43)
        c.send_raw(bytes(junk))
        expect_refused(c)
    assert_healthy(module_gateway, bystander)


def test_http_request_on_iscsi_port(module_gateway: Gateway, bystander: Session) -> None:
    with raw(module_gateway) as c:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(48))
        expect_refused(c)
    assert_healthy(module_gateway, bystander)


def test_truncated_pdu_then_close(module_gateway: Gateway, bystander: Session) -> None:
    data = first_login_keys()
    pdu = login_bhs(csg=0, nsg=1, transit=True, dsl=len(data), isid=random_isid()) + data
    for cut in (1, 20, 47, 48, 60):
        with raw(module_gateway) as c:
            c.send_raw(pdu[:cut])
    time.sleep(0.2)
    assert_healthy(module_gateway, bystander)


def test_reset_connection_mid_pdu(module_gateway: Gateway, bystander: Session) -> None:
    with raw(module_gateway) as c:
        c.send_raw(login_bhs(csg=0, nsg=1, transit=True, dsl=1000)[:30])
        # RST instead of FIN
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.2)
    assert_healthy(module_gateway, bystander)


def test_login_with_huge_data_segment_length(module_gateway: Gateway, bystander: Session) -> None:
    """DataSegmentLength 0xFFFFFF during login (limit 8192): refuse without waiting for 16 MiB."""
    with raw(module_gateway) as c:
        c.send_raw(login_bhs(csg=0, nsg=1, transit=True, dsl=0xFFFFFF, isid=random_isid()))
        c.send_raw(first_login_keys())
        expect_refused(c)
    assert_healthy(module_gateway, bystander)


def test_login_without_initiator_name(module_gateway: Gateway, bystander: Session) -> None:
    """RFC 7143 §11.13.5: missing InitiatorName -> status class 2, detail 0x07; then close."""
    data = first_login_keys(InitiatorName=None, TargetName=module_gateway.iqn)
    with raw(module_gateway) as c:
        c.send_raw(login_bhs(csg=0, nsg=1, transit=True, dsl=len(data), isid=random_isid()))
        c.send_raw(data + bytes((-len(data)) % 4))
        rsp = c.recv_pdu()
        assert rsp.opcode == OP_LOGIN_RSP, rsp
        assert (rsp.bhs[36], rsp.bhs[37]) == (0x02, 0x07), (
            f"expected status 0x0207, got 0x{rsp.bhs[36]:02x}{rsp.bhs[37]:02x}"
        )
        expect_refused(c)
    assert_healthy(module_gateway, bystander)


def test_nop_out_before_login(module_gateway: Gateway, bystander: Session) -> None:
    with raw(module_gateway) as c:
        c.send_pdu(bhs(OP_NOP_OUT, 0x80, immediate=True, itt=1, w20=RESERVED_TAG))
        got = expect_refused(c)
        assert not any(p.opcode == OP_NOP_IN for p in got), got
    assert_healthy(module_gateway, bystander)


def test_login_with_bad_version_and_stage(module_gateway: Gateway, bystander: Session) -> None:
    data = first_login_keys(TargetName=module_gateway.iqn)
    # CSG=2 is reserved; NSG=2 is reserved
    with raw(module_gateway) as c:
        header = bytearray(login_bhs(csg=2, nsg=2, transit=True, dsl=len(data), isid=random_isid()))
        c.send_pdu(bytes(header), data)
        expect_refused(c)
    assert_healthy(module_gateway, bystander)


def test_login_with_unterminated_keys(module_gateway: Gateway, bystander: Session) -> None:
    data = b"InitiatorName=" + b"x" * 300 + b"\xff\xfe=="  # no NUL, invalid UTF-8
    with raw(module_gateway) as c:
        c.send_pdu(login_bhs(csg=0, nsg=1, transit=True, dsl=len(data), isid=random_isid()), data)
        expect_refused(c)
    assert_healthy(module_gateway, bystander)


def test_many_idle_connections(module_gateway: Gateway, bystander: Session) -> None:
    conns = [raw(module_gateway) for _ in range(64)]
    try:
        assert_healthy(module_gateway, bystander)
    finally:
        for c in conns:
            c.close()
    time.sleep(0.2)
    assert_healthy(module_gateway, bystander)


# -- in the full feature phase -----------------------------------------------------------------


def test_ffp_huge_data_segment_length(module_gateway: Gateway, bystander: Session) -> None:
    """A SCSI Command announcing 0xFFFFFF bytes of immediate data (far above the target's
    MaxRecvDataSegmentLength) must be refused without waiting for the data."""
    with module_gateway.login() as s:
        s.send_raw(
            bhs(
                OP_SCSI_CMD,
                0xA1,
                dsl=0xFFFFFF,
                itt=0x1234,
                w20=0xFFFFFF,
                w24=s.cmdsn,
                w28=s.expstatsn,
                tail=bytes([0x2A, 0, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0]),
            )
        )
        s.send_raw(bytes(4096))
        expect_refused(s)
    assert_healthy(module_gateway, bystander)


def test_ffp_unknown_opcode_is_refused(module_gateway: Gateway, bystander: Session) -> None:
    """An undefined initiator opcode: Reject reason 0x05 (Command not supported) carrying the
    BHS, after which the session goes on -- or the connection is closed.  Never anything else."""
    with module_gateway.login() as s:
        header = bhs(0x1C, 0x80, immediate=True, itt=0x4242, w24=s.cmdsn, w28=s.expstatsn)
        s.send_pdu(header)
        s.settimeout(CLOSE_TIMEOUT)
        try:
            rsp = s.recv_pdu()
        except (ConnectionClosed, ConnectionResetError):
            rsp = None
        if rsp is not None:
            assert rsp.opcode == OP_REJECT, rsp
            assert rsp.bhs[2] == 0x05, f"reject reason 0x{rsp.bhs[2]:02x}, expected 0x05"
            assert rsp.data[:48] == header, "a Reject must carry the rejected BHS"
            s.expstatsn = (rsp.u32(24) + 1) & 0xFFFFFFFF
            s.nop()
            assert s.test_unit_ready().status == 0
    assert_healthy(module_gateway, bystander)


def test_ffp_snack_at_erl0(module_gateway: Gateway, bystander: Session) -> None:
    with module_gateway.login() as s:
        s.send_pdu(bhs(OP_SNACK, 0x80, itt=RESERVED_TAG, w28=s.expstatsn))
        try:
            rsp = s.recv_pdu()
        except (ConnectionClosed, ConnectionResetError):
            rsp = None
        if rsp is not None:
            assert rsp.opcode == OP_REJECT, rsp
    assert_healthy(module_gateway, bystander)


def test_ffp_bad_header_digest(module_gateway: Gateway, bystander: Session) -> None:
    """A PDU whose header digest is wrong must not be executed (ERL 0: drop the connection)."""
    with module_gateway.login(header_digest=True) as s:
        header = bhs(
            OP_NOP_OUT,
            0x80,
            immediate=True,
            itt=0x777,
            w20=RESERVED_TAG,
            w24=s.cmdsn,
            w28=s.expstatsn,
        )
        s.send_raw(header + b"\xde\xad\xbe\xef")
        s.settimeout(3.0)
        try:
            while True:
                pdu = s.recv_pdu()
                assert not (pdu.opcode == OP_NOP_IN and pdu.itt == 0x777), (
                    "the gateway answered a PDU with a bad header digest"
                )
        except (ConnectionClosed, ConnectionResetError, TimeoutError):
            pass
    assert_healthy(module_gateway, bystander)


def test_ffp_second_login_request(module_gateway: Gateway, bystander: Session) -> None:
    """A Login Request inside the full feature phase is a protocol error."""
    with module_gateway.login() as s:
        data = first_login_keys(TargetName=module_gateway.iqn)
        s.send_pdu(
            login_bhs(
                csg=STAGE_SECURITY,
                nsg=STAGE_OPERATIONAL,
                transit=True,
                dsl=len(data),
                isid=s.isid,
                tsih=s.tsih,
                cmdsn=s.cmdsn,
                expstatsn=s.expstatsn,
            ),
            data,
        )
        s.settimeout(CLOSE_TIMEOUT)
        try:
            rsp = s.recv_pdu()
        except (ConnectionClosed, ConnectionResetError):
            rsp = None
        if rsp is not None:
            assert rsp.opcode == OP_REJECT or (rsp.opcode == OP_LOGIN_RSP and rsp.bhs[36] != 0), rsp
    assert_healthy(module_gateway, bystander)


def test_gateway_survived_module(module_gateway: Gateway) -> None:
    """Runs last in this module: after all of the above, a clean full login still works."""
    with module_gateway.login() as s:
        assert s.test_unit_ready().status == 0
        assert s.logout().bhs[2] == 0
    module_gateway.assert_no_tracebacks()
