"""What a target connection tells the gateway runtime. Plain values; no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._types import Buffer

if TYPE_CHECKING:
    from .login import LoginOutcome


@dataclass(slots=True)
class Event:
    pass


@dataclass(slots=True)
class LoginCompleted(Event):
    """The connection entered Full Feature Phase."""

    outcome: LoginOutcome


@dataclass(slots=True)
class CommandReady(Event):
    """A SCSI command with all its Data-Out gathered, in CmdSN order; answer with
    ``Connection.complete_command(itt, result)``."""

    itt: int
    lun: int
    lun_bytes: bytes
    cdb: bytes
    expected_length: int
    read: bool
    write: bool
    data: Buffer
    task_attr: int
    cmdsn: int


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
