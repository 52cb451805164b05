"""Leases: how several models and several servers share one store without losing or doubling a prediction.

Every prediction a server admits is leased to it (`owner`, `lease_expires_at`). `LeaseKeeper` renews this
server's leases while it lives, and reclaims only predictions of the models it serves whose lease expired (their
server died or hung), atomically, so that two servers never take the same one. A previous life of a server on
this machine (same boot, same host name) whose process no longer exists is known dead at once: its predictions
are reclaimed without waiting for the lease to run out. A reclaimed prediction is re-run from scratch, or failed
when it cannot be (no stored input, or re-run too often): nothing stays `starting` or `processing`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from cocina.store import PredictionRecord, Store, StoreError

log = logging.getLogger("cocina.serving.recovery")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:12]
    except OSError:
        return "noboot"


def new_owner_id() -> str:
    """This server instance's lease owner: `boot:host:pid:random` (the random part tells lives apart)."""
    host = socket.gethostname().replace(":", "-") or "host"
    return f"{_boot_id()}:{host}:{os.getpid()}:{secrets.token_hex(4)}"


def is_dead_local_owner(owner: str, me: str) -> bool:
    """Whether `owner` was a server on this machine, in this boot, whose process is gone."""
    try:
        boot, host, pid_text, _token = owner.split(":")
        my_boot, my_host, my_pid, _my_token = me.split(":")
        pid = int(pid_text)
    except ValueError:
        return False
    if (boot, host) != (my_boot, my_host) or owner == me:
        return False
    if pid_text == my_pid:
        return True  # our pid in an earlier life (a restarted container): that life is over
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a live process of another user
    return False


class LeaseKeeper:
    """Renews this server's leases and reclaims expired ones for the models it serves.

    `resume(record)` is called for each reclaimed prediction (the model's runtime re-runs or fails it)."""

    def __init__(
        self,
        store: Store,
        owner: str,
        lease_s: float,
        models: Callable[[], list[str]],
        resume: Callable[[PredictionRecord], None],
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_s = lease_s
        self._models = models
        self._resume = resume
        self._task: asyncio.Task[None] | None = None

    def lease_until(self) -> float:
        return time.time() + self.lease_s

    def reclaim(self) -> int:
        """Take over the expired predictions of our models now; how many."""
        dead = tuple(o for o in self.store.lease_owners() if is_dead_local_owner(o, self.owner))
        claimed = self.store.claim_expired(
            self._models(), self.owner, time.time(), self.lease_until(), dead_owners=dead
        )
        for rec in claimed:
            try:
                self._resume(rec)
            except Exception:
                log.exception("could not resume prediction %s", rec.id)
        if claimed:
            log.info("reclaimed %d predictions whose server stopped", len(claimed))
        return len(claimed)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # Renew often enough that a slow step never lets a lease lapse; look for orphans half as often.
        period = max(self.lease_s / 4, 0.05)
        beats = 0
        while True:
            await asyncio.sleep(period)
            beats += 1
            try:
                self.store.renew_leases(self.owner, self.lease_until())
                if beats % 2 == 0:
                    self.reclaim()
            except StoreError as exc:
                log.error("lease upkeep failed: %s", exc)
            except Exception:
                log.exception("lease upkeep failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
