"""VLLMWorkerBackend: vLLM's offline engine in another interpreter, over a JSON-lines channel.

The slow tests run the real worker in the vLLM CPU venv (`make vllm-venv`) on the starter
model and compare it with the in-process hf backend (transformers, fp32): vLLM computes in
bf16, so log-likelihoods are compared with the tolerance of tests/evals/test_backend_openai.py
and labels only where fp32's margin is clear of that noise. The fast tests run the worker with
this interpreter (ftci's venv, no vllm): the channel, identity, errors and crashes need no
engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ftci.errors import BadInputError, InfraError
from ftci.evals.backends.base import GenerationParams
from ftci.evals.backends.vllm_worker import CPU_ENGINE, VLLMWorkerBackend
from tests.helpers.eval_repo import SYSTEM, banking_rows
from tests.helpers.skips import skip_or_fail
from tests.helpers.vllm_server import REPO_ROOT, missing_vllm, vllm_python

if TYPE_CHECKING:
    from ftci.evals.backends.hf import HFBackend

LOGPROB_TOL_CONST = 0.6  # bf16 vs fp32, as tests/evals/test_backend_openai.py measured
LOGPROB_TOL_PER_TOKEN = 0.05
TOLERANCE = LOGPROB_TOL_CONST + 10 * LOGPROB_TOL_PER_TOKEN  # labels and answers: <= 10 tokens


def chat(text: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---- the channel, with this interpreter (no vllm here) ----------------------------------------
@pytest.fixture
def local_worker(starter_dir: Path) -> Iterator[VLLMWorkerBackend]:
    worker = VLLMWorkerBackend(starter_dir, python=Path(sys.executable), **CPU_ENGINE)
    yield worker
    worker.close()


def test_identity_and_runtime_are_the_in_process_backends(local_worker: VLLMWorkerBackend,
                                                          starter_dir: Path) -> None:
    from ftci.evals.backends.vllm import VLLMBackend

    in_process = VLLMBackend(starter_dir, **CPU_ENGINE)  # same interpreter: same packages
    assert local_worker.runtime() == in_process.runtime()
    assert local_worker.identity == in_process.identity
    assert local_worker.pid is not None and local_worker.pid != os.getpid()


def test_a_worker_error_comes_back_with_its_message(local_worker: VLLMWorkerBackend) -> None:
    """The worker's VLLMBackend cannot import vllm (ftci's venv): its InfraError travels."""
    with pytest.raises(InfraError, match=r"vLLM worker: this needs the Python package `vllm`"):
        local_worker.generate([chat("hi")], GenerationParams(4))
    assert local_worker.identity  # the worker is still serving after an error


def test_a_killed_worker_is_an_infra_error_and_the_next_call_restarts(
        local_worker: VLLMWorkerBackend) -> None:
    first = local_worker.identity
    pid = local_worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(InfraError, match=r"killed by signal 9"):
        local_worker.runtime()
    assert time.monotonic() - started < 10  # noticed, not waited for
    assert local_worker.pid is None and _gone(pid)
    local_worker._identity = None  # ask again: a fresh worker answers the same
    assert local_worker.identity == first and local_worker.pid not in (None, pid)


def test_close_ends_the_worker_and_gc_too(starter_dir: Path) -> None:
    worker = VLLMWorkerBackend(starter_dir, python=Path(sys.executable))
    assert worker.identity
    pid = worker.pid
    assert pid is not None
    worker.close()
    assert _gone(pid)
    other = VLLMWorkerBackend(starter_dir, python=Path(sys.executable))
    assert other.identity
    other_pid = other.pid
    assert other_pid is not None
    del other  # weakref.finalize stops it
    import gc

    gc.collect()
    deadline = time.monotonic() + 10
    while not _gone(other_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(other_pid)


def test_missing_interpreter_and_missing_venv_are_bad_input(starter_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    with pytest.raises(BadInputError, match="no such interpreter") as raised:
        VLLMWorkerBackend(starter_dir, python=tmp_path / "python").identity  # noqa: B018
    assert "make vllm-venv" in (raised.value.hint or "")

    from ftci.evals.resolve import _vllm_backend

    monkeypatch.setenv("FTCI_VLLM_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(BadInputError, match="FTCI_VLLM_PYTHON") as raised:
        _vllm_backend(starter_dir, None, tmp_path)
    assert "make vllm-venv" in (raised.value.hint or "")
    monkeypatch.setenv("FTCI_VLLM_PYTHON", sys.executable)
    built = _vllm_backend(starter_dir, "TEMPLATE", tmp_path)
    assert isinstance(built, VLLMWorkerBackend)  # this interpreter has no vllm
    assert built.chat_template == "TEMPLATE" and built.pid is None  # nothing started yet


# ---- the real engine in the vLLM venv -----------------------------------------------------------
@pytest.fixture(scope="module")
def vllm_worker(starter_dir: Path) -> Iterator[VLLMWorkerBackend]:
    reason = missing_vllm()
    if reason:
        skip_or_fail(reason)
    worker = VLLMWorkerBackend(starter_dir, python=vllm_python(), **CPU_ENGINE)
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def hf(starter_dir: Path) -> Iterator[HFBackend]:
    from ftci.evals.backends.hf import HFBackend

    backend = HFBackend(starter_dir)
    yield backend
    backend.close()


@pytest.mark.slow
def test_worker_generates_and_scores_like_transformers(vllm_worker: VLLMWorkerBackend,
                                                       hf: HFBackend) -> None:
    prompts = [chat("What is the capital of France?"), chat("What is the capital of Germany?")]
    params = GenerationParams(12)
    assert vllm_worker.generate(prompts, params) == hf.generate(prompts, params)
    assert vllm_worker.generate(prompts, params)[0] == "The capital of France is Paris."

    labels, rows = banking_rows(3)
    picked = [row for label in labels for row in
              [r for r in rows if r["category"] == label][:3]]
    chats = [chat(row["text"], SYSTEM) for row in picked]
    served = vllm_worker.label_scores(chats, labels)
    exact = hf.label_scores(chats, labels)
    assert len(served) == len(chats) and all(len(row) == len(labels) for row in served)
    decided = 0
    for worker_row, hf_row in zip(served, exact, strict=True):
        assert worker_row == pytest.approx(hf_row, abs=TOLERANCE)
        best, second = sorted(hf_row, reverse=True)[:2]
        if best - second > 2 * TOLERANCE:
            decided += 1
            assert worker_row.index(max(worker_row)) == hf_row.index(best)
    assert decided >= 2, "too few items with a clear argmax to compare"
    likelihood = vllm_worker.loglikelihood([(prompts[0], "The capital of France is Paris.")])
    assert likelihood[0] == pytest.approx(
        hf.loglikelihood([(prompts[0], "The capital of France is Paris.")])[0],
        abs=TOLERANCE)


@pytest.mark.slow
def test_worker_identity_is_the_venv_backends(vllm_worker: VLLMWorkerBackend,
                                              starter_dir: Path) -> None:
    """What VLLMBackend, run in the vLLM venv itself, reports without the proxy."""
    script = ("import json, sys\nfrom ftci.evals.backends.vllm import VLLMBackend\n"
              "b = VLLMBackend(sys.argv[1], dtype='bfloat16', max_model_len=2048, "
              "enforce_eager=True)\nprint(json.dumps({'identity': b.identity, "
              "'runtime': b.runtime()}))\n")
    done = subprocess.run([str(vllm_python()), "-c", script, str(starter_dir)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    direct = json.loads(done.stdout.strip().splitlines()[-1])
    assert vllm_worker.runtime() == direct["runtime"]
    assert vllm_worker.identity == direct["identity"]
    assert direct["runtime"]["vllm"] and direct["runtime"]["device"] == "cpu"


@pytest.mark.slow
def test_an_engine_that_cannot_load_is_an_infra_error(tmp_path: Path) -> None:
    """vLLM refuses a model directory whose config names no architecture it knows."""
    reason = missing_vllm()
    if reason:
        skip_or_fail(reason)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    worker = VLLMWorkerBackend(broken, python=vllm_python(), **CPU_ENGINE)
    try:
        with pytest.raises(InfraError, match="vLLM worker"):
            worker.generate([chat("hi")], GenerationParams(4))
    finally:
        worker.close()
