"""commit_retrying: a lost race reruns the change on the newer document, then gives up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iscsigw.config import edits
from iscsigw.config.file_store import FileConfigStore
from iscsigw.config.store import change_token, commit_retrying
from iscsigw.errors import StoreBusy


class RacedStore(FileConfigStore):
    """Another writer commits between our read of the epoch and each of our commits."""

    def __init__(self, path: Path, races: int) -> None:
        super().__init__(path)
        self.races = races

    def commit(self, mutator: Any, expect_epoch: int | None = None) -> int:
        if self.races and expect_epoch is not None:
            self.races -= 1
            super().commit(lambda d: edits.create_target(d, f"iqn.2026-11.io.x:o{self.races}"))
        return super().commit(mutator, expect_epoch)


def test_lost_race_is_retried_on_the_new_epoch(tmp_path: Path) -> None:
    store = RacedStore(tmp_path / "gateway.conf", races=1)
    store.commit(lambda doc: None)
    calls: list[int] = []

    def mine(doc: dict[str, Any]) -> None:
        calls.append(doc["epoch"])
        edits.create_target(doc, "iqn.2026-11.io.x:mine")

    epoch = commit_retrying(store, mine)
    config, _ = store.load()
    assert set(config.targets) == {"iqn.2026-11.io.x:o0", "iqn.2026-11.io.x:mine"}
    assert epoch == 3 and calls == [2]  # the stale attempt never ran the mutator


def test_gives_up_clearly(tmp_path: Path) -> None:
    store = RacedStore(tmp_path / "gateway.conf", races=5)
    store.commit(lambda doc: None)
    with pytest.raises(StoreBusy, match="nothing was written after 3 attempts"):
        commit_retrying(
            store, lambda doc: edits.create_target(doc, "iqn.2026-11.io.x:m"), attempts=3
        )
    assert "iqn.2026-11.io.x:m" not in store.load()[0].targets


def test_change_token_moves_with_commits(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")
    assert change_token(store) is None
    store.commit(lambda doc: None)
    first = change_token(store)
    store.commit(lambda doc: edits.create_target(doc, "iqn.2026-11.io.x:t"))
    assert change_token(store) != first
