"""A steady upload load: client threads posting one digit each, back to back; latency
percentiles."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests


def percentile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` (0.99 for p99) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Outcome:
    at: float
    status: int | str
    prediction_id: str | None = None
    retry_after: str | None = None
    model_version: str | None = None
    # When the request was sent (``at`` is when its answer, or its error, came back).
    sent: float | None = None


@dataclass
class SteadyLoad:
    """``clients`` threads uploading one digit each, back to back, until stopped."""

    url: str
    image: bytes
    clients: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SteadyLoad:
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._run) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _run(self) -> None:
        with requests.Session() as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    response = http.post(
                        self.url + "/api/v1/predictions",
                        files={"file": ("d.png", self.image)},
                        timeout=60,
                    )
                    body = response.json()
                    created = body["predictions"][0] if response.status_code == 201 else {}
                    outcome = Outcome(
                        time.monotonic(),
                        response.status_code,
                        created.get("id"),
                        response.headers.get("Retry-After"),
                        created.get("model_version"),
                        sent,
                    )
                except (requests.RequestException, ValueError) as error:
                    outcome = Outcome(time.monotonic(), f"{type(error).__name__}", sent=sent)
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status != 201:
                    time.sleep(0.2)  # a client told to retry later does not hammer

    def acknowledged(self) -> list[str]:
        return [o.prediction_id for o in self.outcomes if o.status == 201 and o.prediction_id]

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 201]

    def rate(self) -> float:
        """Answered requests per second since the load started."""
        if not self.outcomes:
            return 0.0
        return len(self.outcomes) / (max(o.at for o in self.outcomes) - self.started)
