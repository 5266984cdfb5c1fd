"""Several OpenAI-compatible servers of one model behind one engine: `openai:<model>@<url>,<url>,...`.

A VPO step at the paper's batch sends 256 long generations to the reasoner, which users serve with several vLLM
servers. Each request goes to the live server with the fewest requests outstanding (ties in turn), counted over
every event loop and thread that uses the engine. A server that cannot be reached (connection refused or dropped)
is taken out for `cooldown_s`, and the request is retried at once on another; after the cooldown the server gets
requests again, so one that came back rejoins. With every server out, requests still go to the one out longest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)


class ServerPool:
    """Which of `urls` the next request goes to, and which are out."""

    def __init__(self, urls: Sequence[str], *, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        if not urls:
            raise ValueError("a server pool needs at least one URL")
        self.urls = list(urls)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._outstanding = [0] * len(urls)
        self._picked = [0] * len(urls)
        self._out_until = [float("-inf")] * len(urls)

    def acquire(self) -> int:
        """The server for the next request (counted as outstanding until `release`)."""
        with self._lock:
            now = self._clock()
            live = [i for i, until in enumerate(self._out_until) if until <= now]
            if not live:
                live = [min(range(len(self.urls)), key=lambda i: self._out_until[i])]
            index = min(live, key=lambda i: (self._outstanding[i], self._picked[i]))
            self._outstanding[index] += 1
            self._picked[index] += 1
            return index

    def release(self, index: int) -> None:
        with self._lock:
            self._outstanding[index] -= 1

    def take_out(self, index: int, reason: str) -> bool:
        """Take a server out for `cooldown_s`; returns whether another server is live to retry on."""
        with self._lock:
            now = self._clock()
            if self._out_until[index] <= now:
                left = sum(until <= now for until in self._out_until) - 1
                logger.warning(
                    "openai engine: %s is out for %gs (%s); %d of %d server(s) left",
                    self.urls[index],
                    self.cooldown_s,
                    reason,
                    left,
                    len(self.urls),
                )
            self._out_until[index] = now + self.cooldown_s
            return any(until <= now for until in self._out_until)

    def live(self) -> list[str]:
        with self._lock:
            now = self._clock()
            return [url for url, until in zip(self.urls, self._out_until) if until <= now]
