"""Per logical unit I/O counters, bumped where a SCSI command completes, read by ``/metrics``.

Cheap by design: one ``IoCounters`` per LU (``__slots__``, plain ints), found with
``io_counters(lu)`` (or kept on the LU as ``lu.io``), and one ``count()`` call per completed
command — a few integer additions
on the event loop thread, no locks, no allocation. The counters only grow (Prometheus
counters); a LU that is closed and opened again starts from zero, which Prometheus reads as a
counter reset.

Reads and writes are the READ and WRITE family opcodes (data bytes are what they moved);
``commands`` counts every command the LU completed, ``errors`` those that ended with a status
other than GOOD.
"""

from __future__ import annotations

import weakref

# READ(6), READ(10), READ(12), READ(16)
READ_OPCODES = frozenset({0x08, 0x28, 0xA8, 0x88})
# WRITE(6/10/12/16), WRITE AND VERIFY(10/12/16), COMPARE AND WRITE, WRITE SAME(10/16),
# ORWRITE(16), WRITE ATOMIC(16)
WRITE_OPCODES = frozenset({0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E, 0x89, 0x41, 0x93, 0x8B, 0x9C})


class IoCounters:
    __slots__ = ("commands", "errors", "read_bytes", "read_ops", "write_bytes", "write_ops")

    def __init__(self) -> None:
        self.commands = 0
        self.errors = 0
        self.read_ops = 0
        self.read_bytes = 0
        self.write_ops = 0
        self.write_bytes = 0

    def count(self, opcode: int, data_in: int, data_out: int, status: int = 0) -> None:
        """One completed command: its opcode, Data-In and Data-Out byte counts, SCSI status."""
        self.commands += 1
        if status:
            self.errors += 1
        elif opcode in READ_OPCODES:
            self.read_ops += 1
            self.read_bytes += data_in
        elif opcode in WRITE_OPCODES:
            self.write_ops += 1
            self.write_bytes += data_out

    def as_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in self.__slots__}


# id(lu) -> counters; the entry is dropped when the LU is garbage collected (so an id is never
# reused while its entry exists). A plain dict: cheaper per lookup than a WeakKeyDictionary.
_COUNTERS: dict[int, IoCounters] = {}


def io_counters(lu: object) -> IoCounters:
    """The counters of ``lu`` (created on first use; they go away with the LU).

    A LU that carries its own ``io`` attribute (an ``IoCounters``) uses that one, so the hot
    path can bump ``lu.io`` directly without the lookup here.
    """
    found = _COUNTERS.get(id(lu))
    if found is None:
        own = getattr(lu, "io", None)
        found = own if isinstance(own, IoCounters) else IoCounters()
        _COUNTERS[id(lu)] = found
        weakref.finalize(lu, _COUNTERS.pop, id(lu), None)
    return found


__all__ = ["READ_OPCODES", "WRITE_OPCODES", "IoCounters", "io_counters"]
