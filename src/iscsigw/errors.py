"""The one exception tree of iscsigw.

    IscsiGwError
    ├── ProtocolError            iSCSI protocol violations (sans-IO core)
    │   ├── PduFormatError       a PDU that cannot be framed: drop the connection
    │   ├── DigestError          header/data digest mismatch
    │   └── PduRejected          a well-framed PDU we answer with a Reject (carries the reason)
    ├── LoginError               login failure; carries the status class/detail to answer with
    ├── BackendError             storage failures, translated to SCSI sense by the SCSI layer
    │   ├── BackendNotFound
    │   ├── BackendFenced        lost the exclusive lock / blocklisted
    │   └── BackendNoSpace
    └── ConfigError              a bad configuration, refused before anything is applied
        ├── ConfigNotFound       a named object (target, disk, client, …) does not exist
        └── StoreBusy            the shared store kept changing under a writer; try again

SCSI CHECK CONDITIONs are raised as ``iscsigw.scsi.sense.CheckCondition`` (a subclass of
IscsiGwError) inside the SCSI layer and never cross into the transport as exceptions.
"""

from __future__ import annotations


class IscsiGwError(Exception):
    """Root of every error raised by iscsigw."""


class ProtocolError(IscsiGwError):
    """The peer broke RFC 7143."""


class PduFormatError(ProtocolError):
    """The byte stream cannot be framed; the only safe answer is closing the connection."""


class DigestError(ProtocolError):
    """A CRC32C header or data digest did not match."""


class PduRejected(ProtocolError):
    """A well-framed PDU that is answered with a Reject PDU carrying ``reason``."""

    def __init__(self, reason: int, message: str, bhs: bytes = b"") -> None:
        super().__init__(message)
        self.reason = reason
        self.bhs = bhs


class LoginError(IscsiGwError):
    """A login that fails with ``status_class``/``status_detail`` (RFC 7143 §11.13.5)."""

    def __init__(self, status_class: int, status_detail: int, message: str) -> None:
        super().__init__(message)
        self.status_class = status_class
        self.status_detail = status_detail


class BackendError(IscsiGwError):
    """A storage backend failed; the SCSI layer maps it to sense data."""


class BackendNotFound(BackendError):
    """The image or file behind a LUN does not exist."""


class BackendFenced(BackendError):
    """This gateway lost the right to write (exclusive lock broken, blocklisted)."""


class BackendNoSpace(BackendError):
    """The backing store is full."""


class ConfigError(IscsiGwError):
    """A configuration that is refused; the message says what to fix."""


class ConfigNotFound(ConfigError):
    """A change or query names a target, disk, client, group or gateway that does not exist."""


class StoreBusy(ConfigError):
    """A writer lost the race for the shared store too many times; nothing was written."""
