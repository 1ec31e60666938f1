"""Is the engine server ready, and has it finished its requests? Standard library HTTP only.

- `wait_ready`: poll its health URL with bounded exponential backoff until it answers 200;
  stop at once when the server's process has exited (a crash is not worth waiting out).
- `in_flight` / `wait_drained`: the requests an engine still works on, from its Prometheus
  `/metrics`, so the old (blue) server is stopped only after the router no longer sends it
  anything (`NginxRouter.wait_old_workers`) and it has answered what it holds.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from ftci.errors import EXIT_INFRA, BadInputError, FtciError

FIRST_DELAY_S = 0.25
MAX_DELAY_S = 5.0
REQUEST_TIMEOUT_S = 5.0
ALIVE_CHECK_S = 0.25  # how often `alive()` is asked while waiting between probes
DRAIN_POLL_S = 0.5
NO_METRICS_GRACE_S = 2.0

# Prometheus gauges whose sum is "requests the engine holds": running plus queued.
IN_FLIGHT_METRICS: dict[str, tuple[str, ...]] = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "tgi": ("tgi_queue_size", "tgi_batch_current_size"),
}
_SAMPLE = re.compile(r'^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)'
                     r'(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(?P<value>\S+)')


class DeployStepError(FtciError):
    """A deploy step (`step`: ready, identity, smoke, switch, drain, ...) failed.

    One class for every step so the rollout reports and records failures alike; the exit code
    follows what failed, not where: a server that never became healthy is infrastructure (3,
    the default), a smoke eval that disagrees with the release's record is a quality gate (1,
    pass `exit_code=EXIT_GATE_FAILED`)."""

    def __init__(self, message: str, *, step: str, hint: str | None = None,
                 exit_code: int = EXIT_INFRA) -> None:
        super().__init__(message, hint=hint)
        self.step = step
        self.exit_code = exit_code

    def render(self) -> str:
        return f"deploy step `{self.step}` failed: {self.message}"


def wait_ready(root_url: str, *, timeout: float, alive: Callable[[], bool] | None = None,
               path: str = "/health", step: str = "ready") -> float:
    """Poll GET root_url+path until 200 and return the seconds waited; raise `DeployStepError`
    at `timeout`, or as soon as `alive()` says the server exited."""
    url = root_url.rstrip("/") + path
    start = time.monotonic()
    deadline = start + timeout
    delay = FIRST_DELAY_S
    last = "no answer yet"
    while True:
        if alive is not None and not alive():
            raise DeployStepError(f"the server exited before {url} answered 200 (last: {last})",
                                  step=step, hint="its log (below) says why")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeployStepError(f"{url} did not answer 200 within {timeout:g}s (last: {last})",
                                  step=step,
                                  hint="a large model may need a longer deploy.ready_timeout")
        status, answer = _get(url, timeout=min(REQUEST_TIMEOUT_S, remaining))
        last = answer if status is None else f"HTTP {status}"
        if status == 200:
            return time.monotonic() - start
        _sleep_watching(min(delay, max(0.0, deadline - time.monotonic())), alive)
        delay = min(delay * 2, MAX_DELAY_S)


def in_flight(root_url: str, engine: str) -> int | None:
    """Requests the server is running or queueing, summed over label sets (vLLM labels each
    sample by engine and model_name); None when /metrics does not answer or lacks the gauges."""
    names = IN_FLIGHT_METRICS.get(engine)
    if names is None:
        raise BadInputError(f"deploy.target: no in-flight metrics known for engine {engine!r}",
                            hint="one of: " + ", ".join(IN_FLIGHT_METRICS))
    status, body = _get(root_url.rstrip("/") + "/metrics", timeout=REQUEST_TIMEOUT_S)
    if status != 200:
        return None
    return count_in_flight(body, names)


def count_in_flight(metrics_text: str, names: tuple[str, ...]) -> int | None:
    """The sum of the samples named `names` in Prometheus text format; None when none appears."""
    total = 0.0
    seen = False
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group("name") not in names:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        if value == value:  # NaN: a gauge not set yet
            total += value
            seen = True
    return round(total) if seen else None


def wait_drained(root_url: str, engine: str, *, timeout: float, settle: int = 2,
                 interval: float = DRAIN_POLL_S) -> bool:
    """True once the server holds no request on `settle` consecutive polls (one zero can fall
    between two requests of a client); False at `timeout`: the caller stops it anyway and says
    so. A server without metrics gets a short fixed grace, then True."""
    deadline = time.monotonic() + timeout
    zeros = 0
    while True:
        count = in_flight(root_url, engine)
        if count is None:
            time.sleep(max(0.0, min(NO_METRICS_GRACE_S, deadline - time.monotonic())))
            return True
        zeros = zeros + 1 if count == 0 else 0
        if zeros >= settle:
            return True
        if time.monotonic() + interval > deadline:
            return False
        time.sleep(interval)


def _get(url: str, *, timeout: float) -> tuple[int | None, str]:
    """(status, body) of one GET; (None, why) when no HTTP answer came."""
    try:
        with urllib.request.urlopen(url, timeout=max(timeout, 0.05)) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        return None, f"{type(reason).__name__}: {reason}"


def _sleep_watching(seconds: float, alive: Callable[[], bool] | None) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if alive is not None and not alive():
            return
        time.sleep(min(ALIVE_CHECK_S, left))
