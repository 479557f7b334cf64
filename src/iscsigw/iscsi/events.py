"""What a target connection tells the gateway runtime. Plain values; no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._types import Received

if TYPE_CHECKING:
    from .login import LoginOutcome


@dataclass(slots=True)
class Event:
    pass


@dataclass(slots=True)
class LoginCompleted(Event):
    """The connection entered Full Feature Phase."""

    outcome: LoginOutcome


class CommandReady(Event):
    """A SCSI command with all its Data-Out gathered, in CmdSN order; answer with
    ``Connection.complete_command(itt, result)`` (or ``complete_good``).

    A plain slots class rather than a dataclass: the connection's own per-command record is a
    subclass, so handing a command to the runtime allocates nothing more (one object per I/O).
    """

    __slots__ = (
        "cdb",
        "cmdsn",
        "data",
        "expected_length",
        "itt",
        "lun",
        "lun_bytes",
        "read",
        "task_attr",
        "write",
    )

    def __init__(
        self,
        itt: int,
        lun: int,
        lun_bytes: bytes,
        cdb: bytes,
        expected_length: int,
        read: bool,
        write: bool,
        data: Received,
        task_attr: int,
        cmdsn: int,
    ) -> None:
        self.itt = itt
        self.lun = lun
        self.lun_bytes = lun_bytes
        self.cdb = cdb
        self.expected_length = expected_length
        self.read = read
        self.write = write
        self.data = data
        self.task_attr = task_attr
        self.cmdsn = cmdsn

    # Identity semantics: two commands are never "equal" (Event's dataclass __eq__ would say
    # any two are, having no fields of its own).
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return (
            f"CommandReady(itt=0x{self.itt:08x}, lun={self.lun}, cdb={bytes(self.cdb[:1]).hex()}"
            f"..., expected_length={self.expected_length}, read={self.read}, write={self.write})"
        )


@dataclass(slots=True)
class TaskManagementRequested(Event):
    """Answer with ``Connection.complete_tmf(itt, response)`` once affected tasks are gone."""

    itt: int
    function: int
    lun: int
    ref_itt: int
    ref_cmdsn: int
    cmdsn: int


@dataclass(slots=True)
class LogoutRequested(Event):
    """Finish or abort outstanding tasks, then call ``Connection.complete_logout(itt)``."""

    itt: int
    reason: int


@dataclass(slots=True)
class ConnectionFailed(Event):
    """The connection must be closed after ``data_to_send()`` is flushed (may be empty)."""

    reason: str
