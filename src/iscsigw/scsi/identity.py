"""Stable identity of a logical unit: serial number, NAA designator, vendor/product strings.

Everything here is derived deterministically from a stable id (the image UUID or WWN), so every
gateway exporting the same image reports the same VPD 0x80/0x83 data, which is what multipath
stacks key on.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

DEFAULT_OUI = 0x001405  # IEEE company id used in the NAA designator; configurable per LU
DEFAULT_VENDOR = "ISCSIGW"
DEFAULT_PRODUCT = "VIRTUAL-DISK"
DEFAULT_REVISION = "0001"


def naa6_designator(stable_id: str, oui: int = DEFAULT_OUI) -> bytes:
    """A 16-byte NAA IEEE Registered Extended (NAA=6) designator derived from ``stable_id``.

    Layout: 4-bit NAA (6), 24-bit OUI, 36-bit vendor specific id, 64-bit extension; the 100
    vendor bits come from SHA-256 of the id, so the value is stable and unique per image.
    """
    if not 0 <= oui <= 0xFFFFFF:
        raise ValueError("OUI must fit in 24 bits")
    digest = hashlib.sha256(stable_id.encode()).digest()
    vendor_bits = int.from_bytes(digest[:13], "big") & ((1 << 100) - 1)
    return ((6 << 124) | (oui << 100) | vendor_bits).to_bytes(16, "big")


def serial_from_id(stable_id: str) -> str:
    """A unit serial number: the UUID's 32 hex digits, or a hash of other ids."""
    try:
        return uuid.UUID(stable_id).hex
    except ValueError:
        return hashlib.sha256(stable_id.encode()).hexdigest()[:32]


def _ascii(value: str, width: int) -> bytes:
    raw = value.encode("ascii", "replace")[:width]
    if any(c < 0x20 or c > 0x7E for c in raw):
        raise ValueError(f"non-printable character in {value!r}")
    return raw.ljust(width, b" ")


@dataclass(frozen=True, slots=True)
class LuIdentity:
    serial: str
    naa: bytes
    vendor: str = DEFAULT_VENDOR
    product: str = DEFAULT_PRODUCT
    revision: str = DEFAULT_REVISION

    def __post_init__(self) -> None:
        if len(self.naa) != 16 or self.naa[0] >> 4 != 6:
            raise ValueError("naa must be a 16-byte NAA-6 designator")
        # Validate the padded strings early so that INQUIRY can never fail later.
        _ascii(self.vendor, 8)
        _ascii(self.product, 16)
        _ascii(self.revision, 4)
        _ascii(self.serial, 252)

    @classmethod
    def from_stable_id(
        cls,
        stable_id: str,
        *,
        oui: int = DEFAULT_OUI,
        vendor: str = DEFAULT_VENDOR,
        product: str = DEFAULT_PRODUCT,
        revision: str = DEFAULT_REVISION,
    ) -> LuIdentity:
        return cls(
            serial=serial_from_id(stable_id),
            naa=naa6_designator(stable_id, oui),
            vendor=vendor,
            product=product,
            revision=revision,
        )

    @property
    def vendor_bytes(self) -> bytes:
        return _ascii(self.vendor, 8)

    @property
    def product_bytes(self) -> bytes:
        return _ascii(self.product, 16)

    @property
    def revision_bytes(self) -> bytes:
        return _ascii(self.revision, 4)

    @property
    def serial_bytes(self) -> bytes:
        return self.serial.encode("ascii")
