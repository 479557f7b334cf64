"""Ask the other gateways whether they applied a configuration epoch (for API replies).

A change is committed to the shared store once; every gateway applies it on its own (see
``watch.py``). To tell the caller what happened where, the gateway that served the request
polls each peer's ``GET /api/_status?epoch=N`` for a short while. A peer that is down or slow
is reported as ``pending`` — it will apply the change when it is back — never as a failure of
the request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx

PEER_WAIT = 3.0
POLL_EVERY = 0.1
REQUEST_TIMEOUT = 1.0


async def _peer_state(
    client: httpx.AsyncClient, name: str, endpoint: str, epoch: int, deadline: float
) -> dict[str, Any]:
    url = f"{endpoint.rstrip('/')}/api/_status"
    reason = ""
    while True:
        try:
            resp = await client.get(url, params={"epoch": str(epoch)})
        except httpx.ConnectError:  # nothing listens: the gateway is down, do not wait
            return {"state": "pending",
                    "reason": f"not reachable at {endpoint} (down?); it applies epoch "
                              f"{epoch} when it starts"}  # fmt: skip
        except httpx.HTTPError as exc:
            reason = f"not reachable at {endpoint} ({type(exc).__name__})"
        else:
            if resp.status_code == 200:
                body = resp.json()
                outcome = body.get("outcome") or {}
                if outcome and not outcome.get("ok", True) and outcome.get("epoch", 0) >= epoch:
                    return {"state": "failed", "epoch": body.get("applied_epoch"),
                            "error": outcome.get("error", "")}  # fmt: skip
                if int(body.get("applied_epoch", 0)) >= epoch:
                    out: dict[str, Any] = {"state": "applied", "epoch": body["applied_epoch"]}
                    if outcome:
                        out["changes"] = _changes(outcome)
                    return out
                reason = f"has applied epoch {body.get('applied_epoch')} so far"
            else:
                reason = f"answered HTTP {resp.status_code} at {endpoint}"
        if time.monotonic() >= deadline:
            return {"state": "pending", "reason": reason + f"; it applies epoch {epoch} when able"}
        await asyncio.sleep(POLL_EVERY)


def _changes(outcome: Mapping[str, Any]) -> dict[str, Any]:
    return {k: outcome[k] for k in ("opened", "resized", "closed", "sessions_closed")
            if outcome.get(k)}  # fmt: skip


async def peer_states(
    peers: Mapping[str, str | None],
    epoch: int,
    *,
    auth: tuple[str, str],
    wait: float = PEER_WAIT,
) -> dict[str, dict[str, Any]]:
    """``{name: {"state": applied|pending|failed, …}}`` for ``{name: api_endpoint}``."""
    out: dict[str, dict[str, Any]] = {}
    reachable = {n: e for n, e in peers.items() if e}
    for name, endpoint in peers.items():
        if not endpoint:
            out[name] = {
                "state": "pending",
                "reason": "this gateway has not registered its API yet (never started); "
                f"it applies epoch {epoch} when it starts",
            }
    if not reachable:
        return out
    deadline = time.monotonic() + wait
    async with httpx.AsyncClient(
        auth=auth, timeout=REQUEST_TIMEOUT, verify=False, trust_env=False
    ) as client:
        results = await asyncio.gather(
            *(_peer_state(client, n, e, epoch, deadline) for n, e in reachable.items())
        )
    out.update(zip(reachable, results, strict=True))
    return dict(sorted(out.items()))


async def peer_get_all(
    peers: Mapping[str, str | None], path: str, *, auth: tuple[str, str]
) -> dict[str, Any]:
    """``GET path`` on every reachable peer: ``{name: JSON body}`` (200 answers only)."""
    reachable = {n: e for n, e in peers.items() if e}
    if not reachable:
        return {}

    async def one(client: httpx.AsyncClient, endpoint: str) -> Any:
        try:
            resp = await client.get(f"{endpoint.rstrip('/')}{path}")
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    async with httpx.AsyncClient(
        auth=auth, timeout=REQUEST_TIMEOUT, verify=False, trust_env=False
    ) as client:
        results = await asyncio.gather(*(one(client, e) for e in reachable.values()))
    return {n: r for n, r in zip(reachable, results, strict=True) if r is not None}


def outcome_changes(outcome: Mapping[str, Any]) -> dict[str, Any]:
    return _changes(outcome)


__all__ = ["PEER_WAIT", "outcome_changes", "peer_get_all", "peer_states"]
