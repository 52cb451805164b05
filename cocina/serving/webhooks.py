"""Webhook delivery: one ordered channel per prediction, throttled progress events, retried terminal events.

As in Cog, non-terminal events (`start`, `output`, `logs`) are coalesced so that at most one is sent every
`min_interval_s` (500 ms), each carrying the prediction as it stands; the `completed` event is always sent, retried
with backoff on connection errors and 5xx answers. Delivery never blocks the prediction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("cocina.serving.webhooks")

EVENT_TYPES = ("start", "output", "logs", "completed")


class WebhookSender:
    """Owns the HTTP client and the delivery tasks of every prediction's webhook."""

    def __init__(self, *, min_interval_s: float = 0.5, retries: int = 4, timeout_s: float = 10.0) -> None:
        self.min_interval_s = min_interval_s
        self.retries = retries
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._tasks: set[asyncio.Task[None]] = set()

    def channel(self, url: str, events_filter: list[str], payload: Callable[[], dict[str, Any]]) -> WebhookChannel:
        """A channel for one prediction; `payload()` renders the prediction as it stands at send time."""
        return WebhookChannel(self, url, frozenset(events_filter or EVENT_TYPES), payload)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def post(self, url: str, body: dict[str, Any], *, retry: bool) -> bool:
        """POST the body; with `retry`, back off and try again on connection errors and 5xx. True if
        delivered."""
        attempts = self.retries if retry else 1
        for attempt in range(attempts):
            try:
                resp = await self._client.post(url, json=body)
                if resp.status_code < 500:
                    return True
                log.warning("webhook %s answered %s", url, resp.status_code)
            except httpx.HTTPError as exc:
                log.warning("webhook %s failed: %s", url, type(exc).__name__)
            if attempt + 1 < attempts:
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
        return False

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Let pending deliveries finish (up to `timeout_s`), then close the client."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for t in pending:
                t.cancel()
        await self._client.aclose()


class WebhookChannel:
    """The ordered webhook stream of one prediction."""

    def __init__(
        self,
        sender: WebhookSender,
        url: str,
        events: frozenset[str],
        payload: Callable[[], dict[str, Any]],
    ) -> None:
        self._sender = sender
        self._url = url
        self._events = events
        self._payload = payload
        self._dirty = asyncio.Event()
        self._completed = False
        self._completed_ev = asyncio.Event()
        self._last_sent = 0.0
        self.task = sender._spawn(self._run())

    def notify(self, event: str) -> None:
        """The prediction changed with this event type (start, output, logs, completed)."""
        if event == "completed":
            self._completed = True
            self._completed_ev.set()
            self._dirty.set()
        elif event in self._events:
            self._dirty.set()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            if not self._completed:
                wait = self._last_sent + self._sender.min_interval_s - time.monotonic()
                if wait > 0:
                    # Coalesce: events arriving meanwhile ride along in the one send after the pause.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._completed_ev.wait(), timeout=wait)
            self._dirty.clear()
            if self._completed:
                if "completed" in self._events:
                    await self._sender.post(self._url, self._payload(), retry=True)
                return
            self._last_sent = time.monotonic()
            await self._sender.post(self._url, self._payload(), retry=False)
