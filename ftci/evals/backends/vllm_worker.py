"""vLLM's offline engine in another interpreter: `VLLMWorkerBackend`, a proxy for `VLLMBackend`.

vLLM's CPU build pins torch and transformers apart from ftci's, so it lives in its own venv
(`make vllm-venv`, ftci/envs.py). This proxy starts that venv's Python on first use,

    <vllm python> -m ftci.evals.backends.vllm_worker      (PYTHONPATH = this ftci's source)

which builds a real `VLLMBackend` and answers one JSON line on stdout for each JSON line on
stdin: `{"op", "args"}` -> `{"ok": true, "value"}` or `{"ok": false, "error", "kind", "hint"}`.

- The channel is a private copy of the worker's original stdout; fd 1 is pointed at stderr
  before vLLM is imported, so nothing vLLM (or a C library) prints can corrupt it. The
  worker's stderr goes to a log file whose tail is quoted when the worker fails.
- An ftci error in the worker comes back as the same kind (a `BadInputError` stays exit 2);
  any other exception, and a worker that exits or is killed, is an `InfraError` with the
  message (and the log's tail).
- `identity` and `runtime` are the worker's own `VLLMBackend`'s (its vllm/torch versions), so
  the eval cache keys are the ones the in-process backend would use there; they cost a Python
  start, not an engine load.
- `close()` ends the worker (its process group: the engine's own processes too); so does
  garbage collection or interpreter exit (`weakref.finalize`).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftci.errors import BadInputError, FtciError, GateFailed, InfraError
from ftci.evals.backends.base import Chat, GenerationParams

# What vLLM's CPU build needs, as tests/helpers/vllm_server.py and STACK-NOTES run it; a value
# already in the environment wins.
WORKER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "HF_DATASETS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
# vLLM on a CPU: bf16 (its CPU kernels), eager (no graph capture), a bounded context.
CPU_ENGINE: dict[str, Any] = {"dtype": "bfloat16", "max_model_len": 2048, "enforce_eager": True}
STOP_WAIT_S = 30.0
LOG_TAIL_LINES = 30
_ERRORS: dict[str, type[FtciError]] = {"BadInputError": BadInputError, "GateFailed": GateFailed}


def cpu_engine_defaults() -> dict[str, Any]:
    """The engine arguments vLLM needs on a machine without an accelerator; none elsewhere."""
    from ftci.evals.backends.identity import accelerator_possible

    return {} if accelerator_possible() else dict(CPU_ENGINE)


class VLLMWorkerBackend:
    """`VLLMBackend(model_dir, **engine kwargs)` run by `python` (a vLLM venv's interpreter)."""

    name = "vllm"

    def __init__(self, model_dir: str | Path, *, python: Path, dtype: str = "auto",
                 max_model_len: int | None = 2048, enforce_eager: bool = False,
                 identity: str | None = None, engine_args: dict[str, Any] | None = None,
                 chat_template: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise BadInputError(f"{self.model_dir}: no such model directory")
        self.python = Path(python)
        from ftci.evals.backends.vllm import engine_settings

        self.engine_args = engine_settings(self.model_dir, dtype=dtype,
                                           max_model_len=max_model_len,
                                           enforce_eager=enforce_eager, extra=engine_args)
        self.chat_template = chat_template
        self._identity = identity
        self._runtime: dict[str, Any] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._buffer = b""
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]

    # ---- the backend's interface ---------------------------------------------------------
    def runtime(self) -> dict[str, Any]:
        """The worker's `VLLMBackend.runtime()` (its vllm, torch and transformers)."""
        if self._runtime is None:
            self._runtime = dict(self._call("runtime"))
        return dict(self._runtime)

    @property
    def identity(self) -> str | None:
        if self._identity is None:
            self._identity = self._call("identity")
        return self._identity

    def generate(self, prompts: Sequence[Chat], params: GenerationParams) -> list[str]:
        if not prompts:
            return []
        return list(self._call("generate", prompts=_chats(prompts),
                               params={"max_new_tokens": params.max_new_tokens,
                                       "temperature": params.temperature,
                                       "stop": list(params.stop)}))

    def loglikelihood(self, requests: Sequence[tuple[Chat, str]]) -> list[float]:
        if not requests:
            return []
        return [float(value) for value in self._call(
            "loglikelihood", requests=[[_chat(chat), continuation]
                                       for chat, continuation in requests])]

    def label_scores(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[list[float]]:
        if not labels:
            raise BadInputError("classify needs the allowed labels (task.labels)")
        if not prompts:
            return []
        return [[float(value) for value in row] for row in self._call(
            "label_scores", prompts=_chats(prompts), labels=list(labels))]

    def classify(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[str]:
        scores = self.label_scores(prompts, labels)
        return [labels[max(range(len(labels)), key=row.__getitem__)] for row in scores]

    def close(self) -> None:
        """Stop the worker: ask it to shut its engine down, then end its process group."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process.poll() is None:
            try:
                self._send(process, {"op": "close", "args": {}})
                self._receive(process, timeout=STOP_WAIT_S)
            except (InfraError, OSError):
                pass
        _stop(process, self._log_path)
        self._log_path = None

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs."""
        return self._process.pid if self._process is not None else None

    # ---- the channel ---------------------------------------------------------------------
    def _call(self, op: str, **args: Any) -> Any:
        process = self._started()
        try:
            self._send(process, {"op": op, "args": args})
        except OSError as exc:
            raise self._died(process, f"could not send {op!r}: {exc}") from exc
        reply = self._receive(process)
        if reply.get("ok"):
            return reply.get("value")
        error = _ERRORS.get(str(reply.get("kind")), InfraError)
        raise error(f"vLLM worker: {reply.get('error')}", hint=reply.get("hint"))

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is not None:
            return self._process
        from ftci.envs import source_path

        if not self.python.is_file():
            raise BadInputError(f"{self.python}: no such interpreter for the vLLM worker",
                                hint="`make vllm-venv` builds the vLLM CPU venv, or set "
                                     "FTCI_VLLM_PYTHON")
        env = {**os.environ, "PYTHONPATH": _pythonpath(source_path())}
        for key, value in WORKER_ENV.items():
            env.setdefault(key, value)
        handle, log_name = tempfile.mkstemp(prefix="ftci-vllm-worker-", suffix=".log")
        self._log_path = Path(log_name)
        try:
            process = subprocess.Popen(
                [str(self.python), "-m", "ftci.evals.backends.vllm_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=handle, env=env,
                cwd=tempfile.gettempdir(), start_new_session=True)
        except OSError as exc:
            raise InfraError(f"could not start the vLLM worker {self.python}: {exc}") from exc
        finally:
            os.close(handle)
        self._process, self._buffer = process, b""
        self._finalizer = weakref.finalize(self, _stop, process, self._log_path)
        self._send(process, {"op": "init", "args": {
            "model_dir": str(self.model_dir), "identity": self._identity,
            "chat_template": self.chat_template, **self.engine_args}})
        reply = self._receive(process)
        if not reply.get("ok"):
            self.close()
            error = _ERRORS.get(str(reply.get("kind")), InfraError)
            raise error(f"vLLM worker: {reply.get('error')}", hint=reply.get("hint"))
        return process

    @staticmethod
    def _send(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
        process.stdin.flush()

    def _receive(self, process: subprocess.Popen[bytes],
                 timeout: float | None = None) -> dict[str, Any]:
        """The next reply line. The engine's own processes may hold the pipe open after the
        worker died, so its end is noticed by polling the worker, not by EOF alone."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        waited = 0.0
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    self._buffer += chunk
                    continue
            if not ready:
                waited += 0.5
            if not ready and process.poll() is None:
                if timeout is not None and waited >= timeout:
                    raise InfraError(f"the vLLM worker did not answer within {timeout:g} s")
                continue
            raise self._died(process, "it stopped before answering")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise self._died(process, f"it wrote a line that is not JSON: {line[:200]!r}") \
                from exc
        if not isinstance(reply, dict):
            raise self._died(process, f"it wrote {line[:200]!r}, not a reply object")
        return reply

    def _died(self, process: subprocess.Popen[bytes], what: str) -> InfraError:
        """The worker is gone or broken: stop what is left, and say why with its log's end."""
        log = self._log_path
        self._process = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        tail = _tail(log)
        _stop(process, log)
        code = process.returncode
        status = (f"killed by signal {-code}" if code is not None and code < 0
                  else f"exit status {code}")
        return InfraError(f"the vLLM worker ({self.python}, pid {process.pid}) failed: {what} "
                          f"({status})" + (f"; its log ends:\n{tail}" if tail else ""),
                          hint="run `make vllm-venv` if the venv is broken; the log above "
                               "says what vLLM refused")


def _chat(chat: Chat) -> list[dict[str, str]]:
    return [dict(message) for message in chat]


def _chats(prompts: Sequence[Chat]) -> list[list[dict[str, str]]]:
    return [_chat(chat) for chat in prompts]


def _pythonpath(source: str) -> str:
    existing = os.environ.get("PYTHONPATH")
    return source if not existing else source + os.pathsep + existing


def _tail(log: Path | None) -> str:
    if log is None:
        return ""
    try:
        lines = log.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _stop(process: subprocess.Popen[bytes], log: Path | None) -> None:
    """End the worker's process group (SIGTERM, then SIGKILL), and remove its log."""
    for stream in (process.stdin, process.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(timeout=STOP_WAIT_S if sig == signal.SIGTERM else 10)
            break
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if log is not None:
        log.unlink(missing_ok=True)


# ---- the worker side ------------------------------------------------------------------------
def _serve() -> None:
    """Read requests from stdin, answer each on the private channel; fd 1 becomes stderr."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # whatever vLLM prints (Python or C) goes to the log, not the channel
    sys.stdout = sys.stderr
    backend: Any = None
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op, args = request.get("op"), request.get("args") or {}
        try:
            if op == "init":
                from ftci.evals.backends.vllm import VLLMBackend

                backend = VLLMBackend(args.pop("model_dir"), **args)
                value: Any = os.getpid()
            elif op == "close":
                if backend is not None:
                    backend.close()
                channel.write(json.dumps({"ok": True, "value": None}) + "\n")
                channel.flush()
                # vLLM's CPU engine threads can abort the interpreter's teardown (SIGABRT):
                # everything asked for is answered, so leave without it
                os._exit(0)
            else:
                value = _dispatch(backend, str(op), args)
            reply = {"ok": True, "value": value}
        except FtciError as exc:
            reply = {"ok": False, "error": exc.message, "kind": type(exc).__name__,
                     "hint": exc.hint}
        except Exception as exc:  # noqa: BLE001 - every failure is answered, as InfraError
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": "Exception",
                     "hint": None}
        channel.write(json.dumps(reply) + "\n")
        channel.flush()
    if backend is not None:  # stdin closed: the proxy went away
        backend.close()
    os._exit(0)


def _dispatch(backend: Any, op: str, args: dict[str, Any]) -> Any:
    if backend is None:
        raise InfraError(f"{op!r} before init")
    if op == "identity":
        return backend.identity
    if op == "runtime":
        return backend.runtime()
    if op == "generate":
        return backend.generate(args["prompts"], GenerationParams(
            int(args["params"]["max_new_tokens"]), float(args["params"]["temperature"]),
            tuple(args["params"]["stop"])))
    if op == "loglikelihood":
        return backend.loglikelihood([(chat, continuation)
                                      for chat, continuation in args["requests"]])
    if op == "label_scores":
        return backend.label_scores(args["prompts"], args["labels"])
    if op == "classify":
        return backend.classify(args["prompts"], args["labels"])
    raise InfraError(f"unknown request {op!r}")


if __name__ == "__main__":  # vllm.LLM starts worker processes: they import this module too
    _serve()
