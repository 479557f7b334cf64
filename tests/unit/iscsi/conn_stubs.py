"""The target and login policy the sans-IO ``Connection`` tests log in against: one target,
open access, no CHAP, a fixed TSIH, SendTargets answering with that target."""

from __future__ import annotations

from iscsigw.iscsi.auth import ChapSecrets
from iscsigw.iscsi.keys import TargetSettings


class StubTarget:
    alias = ""
    tpgt = 1

    def __init__(self, name: str) -> None:
        self.name = name

    def allows(self, initiator_name: str) -> bool:
        return True

    def chap_for(self, initiator_name: str) -> ChapSecrets | None:
        return None


class StubPolicy:
    """Both the LoginPolicy and the SendTargetsPolicy of the connection under test."""

    def __init__(self, settings: TargetSettings, target: str, tsih: int = 5) -> None:
        self.settings = settings
        self.target = target
        self.tsih = tsih

    def find_target(self, name: str) -> StubTarget | None:
        return StubTarget(self.target) if name == self.target else None

    def discovery_chap(self, initiator_name: str) -> ChapSecrets | None:
        return None

    def bind_session(self, **_: object) -> int:
        return self.tsih

    def send_targets(
        self, initiator_name: str, which: str, current_target: str | None
    ) -> list[tuple[str, list[str]]]:
        return [(self.target, ["127.0.0.1:3260,1"])]
