"""A deliberately small, blocking iSCSI initiator for tests, written from RFC 7143.

It is independent of the gateway's own code (only ``struct``, ``hashlib`` and the ``crc32c``
package), so a bug in ``iscsigw.iscsi`` cannot hide itself.  It supports what the tests
need: login with optional CHAP (MD5), header/data digests, SCSI commands with Data-In,
immediate data, R2T/Data-Out, NOP-Out, Logout, and sending arbitrary raw bytes.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Self

import crc32c as _crc32c

BHS_LEN = 48
RESERVED_TAG = 0xFFFFFFFF

OP_NOP_OUT = 0x00
OP_SCSI_CMD = 0x01
OP_TMF_REQ = 0x02
OP_LOGIN_REQ = 0x03
OP_TEXT_REQ = 0x04
OP_DATA_OUT = 0x05
OP_LOGOUT_REQ = 0x06
OP_SNACK = 0x10
OP_NOP_IN = 0x20
OP_SCSI_RSP = 0x21
OP_LOGIN_RSP = 0x23
OP_TEXT_RSP = 0x24
OP_DATA_IN = 0x25
OP_LOGOUT_RSP = 0x26
OP_R2T = 0x31
OP_ASYNC = 0x32
OP_REJECT = 0x3F

STAGE_SECURITY = 0
STAGE_OPERATIONAL = 1
STAGE_FFP = 3

TEST_INITIATOR = "iqn.2024-01.org.iscsigw.test:rawclient"


class ConnectionClosed(Exception):
    """The target closed the TCP connection."""


class LoginFailed(Exception):
    def __init__(self, status_class: int, status_detail: int, keys: dict[str, str]) -> None:
        super().__init__(f"login failed: status 0x{status_class:02x}{status_detail:02x} {keys}")
        self.status_class = status_class
        self.status_detail = status_detail
        self.keys = keys


def crc32c_digest(*parts: bytes) -> bytes:
    value = 0
    for p in parts:
        value = _crc32c.crc32c(p, value)
    return struct.pack("<I", value)


def pad4(n: int) -> int:
    return (-n) % 4


def encode_keys(keys: dict[str, str] | list[tuple[str, str]]) -> bytes:
    items = keys.items() if isinstance(keys, dict) else keys
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in items)


def decode_keys(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in bytes(data).split(b"\0"):
        if not item:
            continue
        k, _, v = item.decode(errors="replace").partition("=")
        out[k] = v
    return out


@dataclass
class RxPdu:
    bhs: bytes
    data: bytes = b""
    ahs: bytes = b""

    @property
    def opcode(self) -> int:
        return self.bhs[0] & 0x3F

    @property
    def flags(self) -> int:
        return self.bhs[1]

    @property
    def itt(self) -> int:
        return int(struct.unpack_from(">I", self.bhs, 16)[0])

    def u32(self, off: int) -> int:
        return int(struct.unpack_from(">I", self.bhs, off)[0])

    @property
    def data_length(self) -> int:
        return int.from_bytes(self.bhs[5:8], "big")

    def __repr__(self) -> str:
        return f"<RxPdu op=0x{self.opcode:02x} flags=0x{self.flags:02x} itt=0x{self.itt:08x} dsl={len(self.data)}>"


def bhs(
    opcode: int,
    flags: int,
    *,
    immediate: bool = False,
    dsl: int = 0,
    ahs_words: int = 0,
    lun: bytes = bytes(8),
    itt: int = 0,
    w20: int = 0,
    w24: int = 0,
    w28: int = 0,
    tail: bytes = bytes(16),
) -> bytes:
    """Build a 48-byte BHS by hand (RFC 7143 §11.2.1)."""
    b = bytearray(BHS_LEN)
    b[0] = (opcode & 0x3F) | (0x40 if immediate else 0)
    b[1] = flags & 0xFF
    b[4] = ahs_words & 0xFF
    b[5:8] = (dsl & 0xFFFFFF).to_bytes(3, "big")
    b[8:16] = lun
    struct.pack_into(">IIII", b, 16, itt, w20, w24, w28)
    b[32:48] = tail[:16].ljust(16, b"\0")
    return bytes(b)


def login_bhs(
    *,
    csg: int,
    nsg: int,
    transit: bool,
    isid: bytes = b"\x80\x12\x34\x56\x00\x00",
    tsih: int = 0,
    itt: int = 0,
    cid: int = 0,
    cmdsn: int = 0,
    expstatsn: int = 0,
    dsl: int = 0,
    cont: bool = False,
) -> bytes:
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | ((csg & 3) << 2) | (nsg & 3)
    b = bytearray(bhs(OP_LOGIN_REQ, flags, immediate=True, dsl=dsl, itt=itt))
    b[8:14] = isid
    struct.pack_into(">H", b, 14, tsih)
    struct.pack_into(">HH", b, 20, cid, 0)
    struct.pack_into(">II", b, 24, cmdsn, expstatsn)
    return bytes(b)


@dataclass
class ScsiResult:
    status: int
    data: bytes = b""
    sense: bytes = b""
    response: int = 0
    residual_flags: int = 0
    residual: int = 0
    pdus: list[RxPdu] = field(default_factory=list)

    @property
    def sense_key(self) -> int:
        if len(self.sense) < 3:
            return -1
        if self.sense[0] & 0x7F in (0x72, 0x73):
            return self.sense[1] & 0x0F
        return self.sense[2] & 0x0F


class RawConnection:
    """One TCP connection; framing only."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.header_digest = False
        self.data_digest = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def settimeout(self, t: float | None) -> None:
        self.sock.settimeout(t)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_pdu(self, header: bytes, data: bytes = b"", ahs: bytes = b"") -> None:
        parts = [header, ahs]
        if self.header_digest:
            parts.append(crc32c_digest(header, ahs))
        if data:
            padded = data + bytes(pad4(len(data)))
            parts.append(padded)
            if self.data_digest:
                parts.append(crc32c_digest(padded))
        self.sock.sendall(b"".join(parts))

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionClosed(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_pdu(self) -> RxPdu:
        header = self.recv_exact(BHS_LEN)
        ahs_len = header[4] * 4
        dsl = int.from_bytes(header[5:8], "big")
        ahs = self.recv_exact(ahs_len) if ahs_len else b""
        if self.header_digest:
            got = self.recv_exact(4)
            want = crc32c_digest(header, ahs)
            if got != want:
                raise AssertionError(f"bad header digest from target: {got.hex()} != {want.hex()}")
        data = b""
        if dsl:
            padded = self.recv_exact(dsl + pad4(dsl))
            if self.data_digest:
                got = self.recv_exact(4)
                want = crc32c_digest(padded)
                if got != want:
                    raise AssertionError(
                        f"bad data digest from target: {got.hex()} != {want.hex()}"
                    )
            data = padded[:dsl]
        return RxPdu(header, data, ahs)

    def wait_closed(self, timeout: float = 10.0) -> list[RxPdu]:
        """Read PDUs until the target closes the connection; return what it sent.

        Raises TimeoutError if the connection is still open after ``timeout`` seconds.
        """
        self.sock.settimeout(timeout)
        got: list[RxPdu] = []
        try:
            while True:
                got.append(self.recv_pdu())
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            return got
        except TimeoutError:
            raise TimeoutError(f"target kept the connection open; it sent {got}") from None


class Session(RawConnection):
    """A logged-in normal session with one connection; SCSI commands go to ``lun``."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, lun: int = 0) -> None:
        super().__init__(host, port, timeout)
        self.lun = lun
        self.itt = 1
        self.cmdsn = 1
        self.expstatsn = 0
        self.tsih = 0
        self.target_mrdsl = 8192
        self.first_burst = 65536
        self.max_burst = 262144
        self.immediate_data = False
        self.initial_r2t = True
        self.negotiated: dict[str, str] = {}
        self.async_messages: list[RxPdu] = []
        self.isid = random_isid()

    def next_itt(self) -> int:
        self.itt = (self.itt + 1) & 0xFFFFFFFF or 1
        return self.itt

    # -- login ----------------------------------------------------------------------------------
    def _login_pdu(self, csg: int, nsg: int, transit: bool, keys: dict[str, str]) -> RxPdu:
        data = encode_keys(keys)
        self.send_pdu(
            login_bhs(
                csg=csg,
                nsg=nsg,
                transit=transit,
                itt=self.itt,
                cmdsn=self.cmdsn,
                expstatsn=self.expstatsn,
                dsl=len(data),
                tsih=self.tsih,
                isid=self.isid,
            ),
            data,
        )
        rsp = self.recv_pdu()
        if rsp.opcode != OP_LOGIN_RSP:
            raise AssertionError(f"expected a Login Response, got {rsp!r}")
        self.expstatsn = (rsp.u32(24) + 1) & 0xFFFFFFFF
        status_class, status_detail = rsp.bhs[36], rsp.bhs[37]
        rkeys = decode_keys(rsp.data)
        if status_class != 0:
            raise LoginFailed(status_class, status_detail, rkeys)
        return rsp

    def login(
        self,
        target: str,
        *,
        initiator: str = TEST_INITIATOR,
        user: str = "",
        password: str = "",
        header_digest: bool = False,
        data_digest: bool = False,
        extra_keys: dict[str, str] | None = None,
    ) -> dict[str, str]:
        first = {
            "InitiatorName": initiator,
            "TargetName": target,
            "SessionType": "Normal",
            "AuthMethod": "CHAP,None" if user else "None",
        }
        rsp = self._login_pdu(STAGE_SECURITY, STAGE_OPERATIONAL, True, first)
        keys = decode_keys(rsp.data)
        self.tsih = int.from_bytes(rsp.bhs[14:16], "big") or self.tsih
        if keys.get("AuthMethod") == "CHAP":
            rsp = self._login_pdu(STAGE_SECURITY, STAGE_OPERATIONAL, False, {"CHAP_A": "5"})
            keys = decode_keys(rsp.data)
            if keys.get("CHAP_A") != "5":
                raise AssertionError(f"target did not pick CHAP_A=5: {keys}")
            ident = int(keys["CHAP_I"])
            challenge = decode_binary(keys["CHAP_C"])
            resp = hashlib.md5(bytes([ident]) + password.encode() + challenge).digest()
            rsp = self._login_pdu(
                STAGE_SECURITY,
                STAGE_OPERATIONAL,
                True,
                {"CHAP_N": user, "CHAP_R": "0x" + resp.hex()},
            )
        # Security stage done (or skipped by the target); continue until T=1 NSG=1.
        for _ in range(4):
            csg, nsg, transit = (rsp.flags >> 2) & 3, rsp.flags & 3, bool(rsp.flags & 0x80)
            if transit and nsg in (STAGE_OPERATIONAL, STAGE_FFP):
                break
            rsp = self._login_pdu(csg, STAGE_OPERATIONAL, True, {})
        else:
            raise AssertionError("target never left the security stage")
        if (rsp.flags & 3) != STAGE_FFP:
            op_keys = {
                "HeaderDigest": "CRC32C" if header_digest else "None",
                "DataDigest": "CRC32C" if data_digest else "None",
                "MaxConnections": "1",
                "InitialR2T": "Yes",
                "ImmediateData": "Yes",
                "MaxRecvDataSegmentLength": "262144",
                "MaxBurstLength": "262144",
                "FirstBurstLength": "65536",
                "DefaultTime2Wait": "2",
                "DefaultTime2Retain": "0",
                "MaxOutstandingR2T": "1",
                "DataPDUInOrder": "Yes",
                "DataSequenceInOrder": "Yes",
                "ErrorRecoveryLevel": "0",
                **(extra_keys or {}),
            }
            rsp = self._login_pdu(STAGE_OPERATIONAL, STAGE_FFP, True, op_keys)
            self.negotiated.update(decode_keys(rsp.data))
            for _ in range(4):
                if rsp.flags & 0x80 and (rsp.flags & 3) == STAGE_FFP:
                    break
                rsp = self._login_pdu(STAGE_OPERATIONAL, STAGE_FFP, True, {})
                self.negotiated.update(decode_keys(rsp.data))
            else:
                raise AssertionError("target never entered full feature phase")
        self.tsih = int.from_bytes(rsp.bhs[14:16], "big")
        if self.tsih == 0:
            raise AssertionError("final login response carries TSIH 0")
        n = self.negotiated
        self.target_mrdsl = int(n.get("MaxRecvDataSegmentLength", "8192"))
        self.first_burst = int(n.get("FirstBurstLength", "65536"))
        self.max_burst = int(n.get("MaxBurstLength", "262144"))
        self.immediate_data = n.get("ImmediateData", "Yes") == "Yes"
        self.initial_r2t = n.get("InitialR2T", "Yes") == "Yes"
        self.header_digest = n.get("HeaderDigest", "None") == "CRC32C"
        self.data_digest = n.get("DataDigest", "None") == "CRC32C"
        if header_digest and not self.header_digest:
            raise AssertionError(f"target refused HeaderDigest=CRC32C: {n}")
        if data_digest and not self.data_digest:
            raise AssertionError(f"target refused DataDigest=CRC32C: {n}")
        self.cmdsn = rsp.u32(28)  # ExpCmdSN
        return self.negotiated

    # -- full feature phase --------------------------------------------------------------------
    def _recv_for(self, itt: int) -> RxPdu:
        while True:
            pdu = self.recv_pdu()
            if pdu.opcode == OP_ASYNC:
                self.async_messages.append(pdu)
                continue
            if pdu.opcode == OP_NOP_IN and pdu.itt == RESERVED_TAG:
                # target ping: answer with a NOP-Out echoing its TTT
                self.send_pdu(
                    bhs(
                        OP_NOP_OUT,
                        0x80,
                        immediate=True,
                        itt=RESERVED_TAG,
                        w20=pdu.u32(20),
                        w24=self.cmdsn,
                        w28=self.expstatsn,
                    )
                )
                continue
            if pdu.opcode == OP_REJECT:
                return pdu
            if pdu.itt != itt:
                raise AssertionError(f"unexpected PDU {pdu!r} while waiting for ITT 0x{itt:08x}")
            return pdu

    def _track_statsn(self, pdu: RxPdu) -> None:
        self.expstatsn = (pdu.u32(24) + 1) & 0xFFFFFFFF

    def nop(self, payload: bytes = b"ping") -> RxPdu:
        itt = self.next_itt()
        self.send_pdu(
            bhs(
                OP_NOP_OUT,
                0x80,
                immediate=True,
                dsl=len(payload),
                itt=itt,
                w20=RESERVED_TAG,
                w24=self.cmdsn,
                w28=self.expstatsn,
            ),
            payload,
        )
        rsp = self._recv_for(itt)
        if rsp.opcode != OP_NOP_IN:
            raise AssertionError(f"NOP-Out answered with {rsp!r}")
        self._track_statsn(rsp)
        if rsp.data != payload:
            raise AssertionError(f"NOP-In did not echo the ping data: {rsp.data!r}")
        return rsp

    def scsi(
        self,
        cdb: bytes,
        *,
        read_len: int = 0,
        write_data: bytes = b"",
        lun: int | None = None,
    ) -> ScsiResult:
        lun = self.lun if lun is None else lun
        itt = self.next_itt()
        lun_bytes = struct.pack(">HHI", lun & 0x3FFF, 0, 0)
        edtl = read_len or len(write_data)
        immediate = b""
        if write_data and self.immediate_data:
            immediate = write_data[: min(self.first_burst, self.target_mrdsl, len(write_data))]
        flags = 0x80 | (0x40 if read_len else 0) | (0x20 if write_data else 0) | 0x01
        header = bhs(
            OP_SCSI_CMD,
            flags,
            dsl=len(immediate),
            lun=lun_bytes,
            itt=itt,
            w20=edtl,
            w24=self.cmdsn,
            w28=self.expstatsn,
            tail=cdb,
        )
        self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        self.send_pdu(header, immediate)
        buf = bytearray(read_len)
        got = 0
        pdus: list[RxPdu] = []
        while True:
            pdu = self._recv_for(itt)
            pdus.append(pdu)
            if pdu.opcode == OP_REJECT:
                raise AssertionError(f"command rejected, reason 0x{pdu.bhs[2]:02x}")
            if pdu.opcode == OP_DATA_IN:
                off = pdu.u32(40)
                buf[off : off + len(pdu.data)] = pdu.data
                got += len(pdu.data)
                if pdu.flags & 0x01:  # S: status piggybacked
                    self._track_statsn(pdu)
                    return ScsiResult(
                        pdu.bhs[3],
                        bytes(buf[:got]) if got < read_len else bytes(buf),
                        residual_flags=pdu.flags & 0x06,
                        residual=pdu.u32(44),
                        pdus=pdus,
                    )
            elif pdu.opcode == OP_R2T:
                ttt, offset, length = pdu.u32(20), pdu.u32(40), pdu.u32(44)
                self._send_data_out(itt, lun_bytes, ttt, write_data, offset, length)
            elif pdu.opcode == OP_SCSI_RSP:
                self._track_statsn(pdu)
                sense = b""
                if pdu.data and len(pdu.data) >= 2:
                    n = int.from_bytes(pdu.data[:2], "big")
                    sense = pdu.data[2 : 2 + n]
                return ScsiResult(
                    pdu.bhs[3],
                    bytes(buf[:got]) if got < read_len else bytes(buf),
                    sense=sense,
                    response=pdu.bhs[2],
                    residual_flags=pdu.flags & 0x06,
                    residual=pdu.u32(44),
                    pdus=pdus,
                )
            else:
                raise AssertionError(f"unexpected PDU {pdu!r} during a SCSI command")

    def _send_data_out(
        self, itt: int, lun: bytes, ttt: int, data: bytes, offset: int, length: int
    ) -> None:
        end = offset + length
        datasn = 0
        while offset < end:
            n = min(self.target_mrdsl, end - offset)
            chunk = data[offset : offset + n]
            final = offset + n >= end
            header = bhs(
                OP_DATA_OUT,
                0x80 if final else 0,
                dsl=len(chunk),
                lun=lun,
                itt=itt,
                w20=ttt,
                w28=self.expstatsn,
                tail=struct.pack(">IIII", 0, datasn, offset, 0),  # 36 DataSN, 40 Buffer Offset
            )
            self.send_pdu(header, chunk)
            datasn += 1
            offset += n

    # -- convenience commands ------------------------------------------------------------------
    def test_unit_ready(self, retries: int = 3) -> ScsiResult:
        """TUR, absorbing the unit attentions a fresh I_T nexus may report first."""
        res = self.scsi(bytes(6))
        while res.status == 0x02 and res.sense_key == 0x06 and retries > 0:
            retries -= 1
            res = self.scsi(bytes(6))
        return res

    def read10(self, lba: int, blocks: int, block_size: int) -> ScsiResult:
        cdb = struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)
        return self.scsi(cdb, read_len=blocks * block_size)

    def write10(self, lba: int, data: bytes, block_size: int, fua: bool = False) -> ScsiResult:
        blocks = len(data) // block_size
        cdb = struct.pack(">BBIBHB", 0x2A, 0x08 if fua else 0, lba, 0, blocks, 0)
        return self.scsi(cdb, write_data=data)

    def read_capacity16(self) -> tuple[int, int]:
        """(number of blocks, block size)."""
        cdb = struct.pack(">BBQIBB", 0x9E, 0x10, 0, 32, 0, 0)
        res = self.scsi(cdb, read_len=32)
        if res.status != 0:
            raise AssertionError(
                f"READ CAPACITY(16) failed: status 0x{res.status:02x} {res.sense.hex()}"
            )
        last, bs = struct.unpack_from(">QI", res.data)
        return last + 1, bs

    def logout(self) -> RxPdu:
        itt = self.next_itt()
        self.send_pdu(
            bhs(OP_LOGOUT_REQ, 0x80, immediate=True, itt=itt, w24=self.cmdsn, w28=self.expstatsn)
        )
        rsp = self._recv_for(itt)
        if rsp.opcode != OP_LOGOUT_RSP:
            raise AssertionError(f"Logout answered with {rsp!r}")
        return rsp


def decode_binary(value: str) -> bytes:
    if value[:2].lower() == "0x":
        return bytes.fromhex(value[2:])
    if value[:2].lower() == "0b":
        import base64

        return base64.b64decode(value[2:])
    raise AssertionError(f"unsupported binary encoding: {value!r}")


def random_isid() -> bytes:
    return b"\x80" + os.urandom(5)
