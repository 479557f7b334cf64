"""Header and data digests (CRC32C) with the test suite's own small initiator.

libiscsi (and so QEMU) only ever offers ``DataDigest=None``, so DataDigest=CRC32C is exercised
here with ``rawclient.Session``, which is written from RFC 7143 independently of the gateway.
"""

from __future__ import annotations

import os

import pytest

from integration.harness import Gateway


@pytest.mark.parametrize(
    ("header_digest", "data_digest"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["none", "header", "data", "header+data"],
)
def test_write_read_with_digests(
    module_gateway: Gateway, header_digest: bool, data_digest: bool
) -> None:
    gw = module_gateway
    with gw.login(header_digest=header_digest, data_digest=data_digest) as s:
        assert s.test_unit_ready().status == 0
        blocks, block_size = s.read_capacity16()
        assert blocks * block_size == 1 << 30
        s.nop(b"digest ping" * 10)
        # 1 MiB + 1 block: immediate data, several R2Ts and multi-PDU Data-In
        data = os.urandom((1 << 20) + block_size)
        lba = 4096 + (header_digest << 1 | data_digest) * 4096
        w = s.write10(lba, data, block_size)
        assert w.status == 0, f"WRITE(10) status 0x{w.status:02x} sense {w.sense.hex()}"
        r = s.read10(lba, len(data) // block_size, block_size)
        assert r.status == 0, f"READ(10) status 0x{r.status:02x} sense {r.sense.hex()}"
        assert r.data == data
        rsp = s.logout()
        assert rsp.bhs[2] == 0, "logout response must be 'closed successfully'"
