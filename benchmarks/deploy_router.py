"""What the router costs and what a switch costs: request latency through ftci's nginx vs
straight to the engine, and during a blue/green switch vs steady state.

Two real vLLM CPU servers (`.venv-vllm`, or FTCI_VLLM_PYTHON) serve the starter model
(SmolLM2-135M-Instruct, `ftci models pull smollm2-135m-instruct`) on loopback ports, started
the way `ftci deploy`'s process launcher starts them; ftci's `NginxRouter` sits in front.

  (a) router overhead: `--requests` chat completions (`--max-tokens` tokens, greedy), one
      client at a time and `--clients` at once, alternating direct and through nginx, request
      for request; p50 / p99 of each and the ratio nginx / direct (target: p50 within 5%).
  (b) a switch under load: `--clients` clients loop through nginx for `--window` seconds of
      steady state, then `router.switch()` to the second server (warmed with concurrent
      requests first, as the smoke eval warms it) mid-window; failed requests (target 0) and
      p50 / p99 in the steady window vs the window around the switch (ratio).

    .venv/bin/python benchmarks/deploy_router.py [--requests 40] [--clients 4]
        [--max-tokens 8] [--window 10] [--json]

About two minutes on an idle 2-core CPU, most of it the two servers' start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ftci.deploy.router import NginxRouter  # noqa: E402
from tests.helpers.vllm_server import free_port, start_vllm_server  # noqa: E402

STARTER = Path(os.environ.get("FTCI_HOME", Path.home() / ".cache" / "ftci")) / "models" / \
    "smollm2-135m-instruct"


def machine_line() -> str:
    import platform

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"machine: {os.cpu_count()} cores, {memory:.0f} GiB, Python "
            f"{platform.python_version()}, {platform.system()} {platform.machine()}")


def request(url: str, max_tokens: int, index: int) -> float:
    """One chat completion; its latency in seconds (raises on failure)."""
    body = json.dumps({"model": "smollm2", "max_tokens": max_tokens, "temperature": 0.0,
                       "messages": [{"role": "user",
                                     "content": f"Name a colour. ({index % 7})"}]}).encode()
    started = time.perf_counter()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as response:
        if response.status != 200 or not json.load(response).get("choices"):
            raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - started


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def overhead(direct: str, routed: str, requests: int, clients: int, max_tokens: int
             ) -> dict[str, dict[str, float]]:
    """(a): the same requests, alternating direct and through nginx."""
    found: dict[str, dict[str, float]] = {}
    for concurrency in (1, clients):
        times: dict[str, list[float]] = {"direct": [], "nginx": []}
        with ThreadPoolExecutor(concurrency) as pool:
            for start in range(0, requests, concurrency):
                for name, url in (("direct", direct), ("nginx", routed)):
                    batch = range(start, min(start + concurrency, requests))
                    times[name] += pool.map(lambda i, u=url: request(u, max_tokens, i), batch)
        for name, values in times.items():
            p50, p99 = percentiles(values)
            found[f"{name} x{concurrency}"] = {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000}
    return found


def switch_under_load(router: NginxRouter, green_port: int, clients: int, max_tokens: int,
                      window: float) -> dict[str, float]:
    """(b): steady load, then the switch in the middle of the second window."""
    records: list[tuple[float, float | None]] = []  # (start time, latency or None: failed)
    stop = threading.Event()

    def client(index: int) -> None:
        count = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                records.append((started, request(router.url, max_tokens, index + count)))
            except Exception:  # noqa: BLE001 - every failure counts
                records.append((started, None))
            count += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    begin = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(window * 1.5)
    switched_at = time.monotonic()
    router.switch(f"127.0.0.1:{green_port}")
    router.wait_old_workers(60)
    switch_s = time.monotonic() - switched_at
    time.sleep(window / 2)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    steady = [lat for at, lat in records if lat is not None and begin + 1 < at < switched_at - 1]
    around = [lat for at, lat in records if lat is not None and
              switched_at - window / 2 <= at <= switched_at + window / 2]
    steady_p50, steady_p99 = percentiles(steady)
    around_p50, around_p99 = percentiles(around)
    return {"requests": len(records), "failed": sum(lat is None for _, lat in records),
            "switch_s": switch_s, "steady_p50_ms": steady_p50 * 1000,
            "steady_p99_ms": steady_p99 * 1000, "switch_p50_ms": around_p50 * 1000,
            "switch_p99_ms": around_p99 * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (STARTER / "config.json").is_file():
        sys.exit(f"no starter model at {STARTER}: run `ftci models pull smollm2-135m-instruct`")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # as ftci deploy starts them
    with tempfile.TemporaryDirectory(prefix="ftci-bench-router-") as temp:
        work = Path(temp)
        blue = start_vllm_server(STARTER, work / "blue.log")
        green = None
        router = NginxRouter(work / "router", f"127.0.0.1:{free_port()}")
        try:
            blue_port = int(blue.base_url.rsplit(":", 1)[1].split("/")[0])
            router.switch(f"127.0.0.1:{blue_port}")
            request(router.url, args.max_tokens, 0)  # warm both paths
            request(blue.base_url[:-3], args.max_tokens, 0)
            found = overhead(blue.base_url[:-3], router.url, args.requests, args.clients,
                             args.max_tokens)
            green = start_vllm_server(STARTER, work / "green.log")
            green_port = int(green.base_url.rsplit(":", 1)[1].split("/")[0])
            # warm green as ftci deploy's smoke eval does (concurrent requests): a vLLM CPU
            # engine's first batched forward compiles kernels for the new shapes
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(lambda i: request(green.base_url[:-3], args.max_tokens, i),
                              range(args.clients * 4)))
            switched = switch_under_load(router, green_port, args.clients, args.max_tokens,
                                         args.window)
        finally:
            router.stop()
            blue.stop()
            if green is not None:
                green.stop()
    if args.json:
        print(json.dumps({"overhead": found, "switch": switched}, indent=2))
        return
    print(machine_line())
    print("\n(a) router overhead (the same requests, direct vs through ftci's nginx)\n")
    print("| path | clients | p50 ms | p99 ms | nginx / direct p50 |")
    print("| --- | --- | --- | --- | --- |")
    for concurrency in (1, args.clients):
        direct = found[f"direct x{concurrency}"]
        routed = found[f"nginx x{concurrency}"]
        for name, row in (("direct", direct), ("nginx", routed)):
            ratio = f"{routed['p50_ms'] / direct['p50_ms']:.3f}x" if name == "nginx" else "-"
            print(f"| {name} | {concurrency} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                  f"{ratio} |")
    s = switched
    print(f"\n(b) switch under load ({args.clients} clients): {s['requests']} requests, "
          f"{s['failed']} failed, switch took {s['switch_s']:.2f} s\n")
    print("| window | p50 ms | p99 ms |")
    print("| --- | --- | --- |")
    print(f"| steady | {s['steady_p50_ms']:.1f} | {s['steady_p99_ms']:.1f} |")
    print(f"| around the switch | {s['switch_p50_ms']:.1f} | {s['switch_p99_ms']:.1f} |")
    print(f"| ratio | {s['switch_p50_ms'] / s['steady_p50_ms']:.3f}x | "
          f"{s['switch_p99_ms'] / s['steady_p99_ms']:.3f}x |")


if __name__ == "__main__":
    main()
