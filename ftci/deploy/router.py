"""ftci's own nginx in front of the engine servers: clients use one stable URL (`deploy.listen`)
while blue/green engines come and go behind it.

Why nginx: a graceful reload (SIGHUP) starts workers with the new upstream and lets the old
workers finish the requests they hold, streaming ones included, so a switch loses nothing.
`switch` returns once every worker of the old generation has stopped accepting; the caller then
waits for `wait_old_workers` before it drains and stops the old engine, because until then an
old worker may still be talking to it.

ftci owns only files under `state_dir` (nginx.conf, its pid file, logs, temp paths), so this
nginx runs as root or not and never touches /etc/nginx, /var/lib/nginx or a system nginx on
port 80. The upstream lives in nginx.conf itself (a marker line ftci reads back), so the file
nginx serves and the answer of `upstream()` cannot disagree.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ftci.errors import BadInputError, InfraError
from ftci.io import atomic_write_text, fsync_directory

NGINX_HINT = "`make nginx`, or apt-get install nginx-light, or set FTCI_NGINX=/path/to/nginx"
UPSTREAM_MARK = "# ftci-upstream: "
# nginx creates the temp path of every HTTP module it was built with at startup: each must point
# inside state_dir, or a non-root nginx fails on /var/lib/nginx.
TEMP_MODULES = ("proxy", "fastcgi", "uwsgi", "scgi")
# Chats are JSON bodies; kept in memory (buffer = max) so no worker writes a temp file: as root,
# workers run as `nobody` and may not reach state_dir.
MAX_BODY = "16m"
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*):(\d{1,5})$")
_UNSAFE_PATH = re.compile(r'["$;{}\s\\]')


def parse_address(value: str) -> tuple[str, int] | None:
    """HOST:PORT (IPv6 in brackets) as (host, port), or None when it is not one."""
    match = _ADDRESS.match(value.strip())
    if match is None or not 0 < int(match.group(2)) < 65536:
        return None
    return match.group(1), int(match.group(2))


@dataclass(frozen=True)
class Worker:
    pid: int
    shutting_down: bool


class NginxRouter:
    """One nginx master per deployment, found again from its pid file by any later `ftci`."""

    def __init__(self, state_dir: Path, listen: str, *, nginx: str | None = None) -> None:
        address = parse_address(listen)
        if address is None:
            raise BadInputError(f"deploy.listen: {listen!r} is not HOST:PORT",
                                hint="e.g. listen: 127.0.0.1:8080")
        if _UNSAFE_PATH.search(str(state_dir.absolute())):
            raise BadInputError(f"the router's state directory {state_dir} holds a space, quote, "
                                "`$`, `;` or brace, which nginx.conf cannot carry unquoted",
                                hint="set FTCI_HOME to a plain path")
        self.state_dir = state_dir.absolute()
        self.listen = listen.strip()
        self._address = address
        self._nginx = nginx
        self.conf = self.state_dir / "nginx.conf"
        self.pid_file = self.state_dir / "nginx.pid"
        self.error_log = self.state_dir / "error.log"

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    # --- what is running ---------------------------------------------------------------------

    def master_pid(self) -> int | None:
        """The pid of ftci's nginx master for this state_dir, or None: a stale pid file, a
        reused pid, a zombie or another nginx does not count."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        cmdline = _cmdline(pid)
        if cmdline is None or _state(pid) in (None, "Z", "X"):
            return None
        if not cmdline.startswith("nginx: master process") or str(self.conf) not in cmdline:
            return None
        return pid

    def running(self) -> bool:
        return self.master_pid() is not None

    def upstream(self) -> str | None:
        """The HOST:PORT nginx.conf sends requests to (what nginx serves once it has loaded it)."""
        try:
            text = self.conf.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(UPSTREAM_MARK):
                return line[len(UPSTREAM_MARK):].strip()
        return None

    def workers(self) -> list[Worker]:
        """The master's worker processes, from /proc (nginx renames a worker that is finishing
        its requests after a reload to `nginx: worker process is shutting down`)."""
        master = self.master_pid()
        if master is None:
            return []
        found = []
        for pid in _children(master):
            cmdline = _cmdline(pid) or ""
            if cmdline.startswith("nginx: worker process"):
                found.append(Worker(pid, "shutting down" in cmdline))
        return found

    def wait_old_workers(self, timeout: float) -> bool:
        """True once no worker of the previous generation is left, so none can still talk to
        the old upstream; False at `timeout` (a stream that outlives it: the caller decides)."""
        deadline = time.monotonic() + timeout
        while True:
            if not any(worker.shutting_down for worker in self.workers()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    # --- changing it -------------------------------------------------------------------------

    def switch(self, upstream: str, *, timeout: float = 15.0) -> None:
        """Send new requests to `upstream` (HOST:PORT): write and validate the config, then
        start nginx or reload it gracefully, and return once the new generation serves.

        The candidate config is validated (`nginx -t`) beside nginx.conf and only then renamed
        over it, so nginx.conf always holds a config nginx accepted; a reload that fails anyway
        puts the previous file back, matching what the master still serves."""
        if parse_address(upstream) is None:
            raise InfraError(f"router upstream {upstream!r} is not HOST:PORT")
        binary = self.nginx_binary()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "temp").mkdir(exist_ok=True)
        candidate = self.state_dir / "nginx.conf.next"
        atomic_write_text(candidate, self.render(upstream, modules=self._modules(binary)))
        status, output = self._run(binary, "-t", conf=candidate)
        if status != 0:
            candidate.unlink(missing_ok=True)
            raise InfraError(f"nginx rejected the router config for upstream {upstream}: "
                             f"{_nginx_message(output)}",
                             hint=f"the router keeps serving {self.upstream() or 'nothing'}; "
                                  f"its config is {self.conf}")
        master = self.master_pid()
        if master is None:
            self._check_listen_free()
        previous = self.conf.read_text() if self.conf.exists() else None
        os.replace(candidate, self.conf)
        fsync_directory(self.state_dir)
        try:
            if master is None:
                self._start(binary, timeout)
            else:
                self._reload(master, timeout)
        except BaseException:
            if previous is None:
                self.conf.unlink(missing_ok=True)
            else:
                atomic_write_text(self.conf, previous)
            raise

    def stop(self, *, timeout: float = 10.0) -> None:
        """Graceful quit (workers finish their requests), then SIGTERM, then SIGKILL. Stopping a
        stopped router is a no-op."""
        pid = self.master_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if _wait_gone(pid, wait):
                return
        raise InfraError(f"nginx master {pid} ({self.conf}) did not exit after SIGKILL")

    # --- the config --------------------------------------------------------------------------

    def render(self, upstream: str, *, modules: tuple[str, ...] = TEMP_MODULES) -> str:
        """The whole nginx.conf. Proxy settings keep a switch lossless for streamed LLM answers:
        HTTP/1.1 with keepalive to the engine, no response buffering (tokens reach the client
        as they come), an hour's read timeout (a long generation is not an error), and
        max_fails=0 (one failed request must not mark the only upstream down: nginx would
        answer 502 to every request for fail_timeout)."""
        d = self.state_dir
        temps = "\n".join(f"    {module}_temp_path {d}/temp/{module};" for module in modules)
        return f"""\
# Written by ftci (ftci/deploy/router.py); rewritten at every switch: do not edit.
{UPSTREAM_MARK}{upstream}
daemon on;
worker_processes auto;
pid {self.pid_file};
error_log {self.error_log} warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format ftci '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                    'upstream=$upstream_addr upstream_status=$upstream_status rt=$request_time';
    access_log {d}/access.log ftci;
    client_body_temp_path {d}/temp/client_body;
{temps}
    client_max_body_size {MAX_BODY};
    client_body_buffer_size {MAX_BODY};

    upstream ftci_engine {{
        server {upstream} max_fails=0;
        keepalive 32;
        keepalive_timeout 60s;
    }}

    server {{
        listen {self.listen};
        location / {{
            proxy_pass http://ftci_engine;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_cache off;
            proxy_connect_timeout 10s;
            proxy_send_timeout 3600s;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""

    # --- nginx itself ------------------------------------------------------------------------

    def nginx_binary(self) -> str:
        """The nginx to run: the constructor's, else $FTCI_NGINX, else PATH, else /usr/sbin
        (Debian's, which a non-root PATH often lacks)."""
        chosen = self._nginx or os.environ.get("FTCI_NGINX")
        if chosen:
            if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
                raise InfraError(f"nginx not found: {chosen} (FTCI_NGINX) is not an executable",
                                 hint=NGINX_HINT)
            return chosen
        found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
        if found is None:
            raise InfraError("nginx not found", hint=NGINX_HINT)
        return found

    def _modules(self, binary: str) -> tuple[str, ...]:
        built = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False)
        flags = built.stdout + built.stderr
        return tuple(m for m in TEMP_MODULES if f"--without-http_{m}_module" not in flags)

    def _run(self, binary: str, *args: str, conf: Path | None = None) -> tuple[int, str]:
        """nginx's exit status and output."""
        # stderr goes to a file, not a pipe: the daemonised master would inherit a pipe and keep
        # subprocess.run waiting until it exits.
        out = self.state_dir / "nginx.out"
        with out.open("w") as handle:
            completed = subprocess.run(
                [binary, "-p", f"{self.state_dir}/", "-c", str(conf or self.conf),
                 "-e", str(self.error_log), *args],
                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, check=False,
                # a GitHub runner kills what a job started unless this is emptied: the router
                # must outlive the deploy job
                env={**os.environ, "RUNNER_TRACKING_ID": ""})
        return completed.returncode, out.read_text(errors="replace")

    def _start(self, binary: str, timeout: float) -> None:
        status, output = self._run(binary)
        if status != 0:
            if "Address already in use" in output:
                raise self._listen_taken()
            raise InfraError(f"nginx did not start: {_nginx_message(output)}",
                             hint=f"its log: {self.error_log}")
        deadline = time.monotonic() + timeout
        while not (self.running() and self.workers()):
            if time.monotonic() >= deadline:
                raise InfraError(f"nginx started but no worker appeared within {timeout:g}s",
                                 hint=f"its log: {self.error_log}")
            time.sleep(0.02)

    def _reload(self, master: int, timeout: float) -> None:
        """SIGHUP, then wait until every old worker is gone or shutting down (it has closed its
        listening socket: new connections reach only workers with the new upstream)."""
        old = {worker.pid for worker in self.workers()}
        offset = self.error_log.stat().st_size if self.error_log.exists() else 0
        os.kill(master, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            workers = self.workers()
            if workers and not any(w.pid in old and not w.shutting_down for w in workers):
                return
            failure = _new_emerg(self.error_log, offset)
            if failure:
                raise InfraError(f"nginx kept its previous config: {failure}",
                                 hint=f"its log: {self.error_log}")
            if time.monotonic() >= deadline:
                raise InfraError(f"nginx did not load the new config within {timeout:g}s",
                                 hint=f"its log: {self.error_log}")
            time.sleep(0.02)

    def _check_listen_free(self) -> None:
        """Bind the port as nginx will (SO_REUSEADDR) to fail fast and clearly: nginx itself
        retries a taken port for 2.5 s and then prints a bare `bind() failed`."""
        host, port = self._address
        family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host.strip("[]"), port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise self._listen_taken() from exc
                raise InfraError(f"the router cannot listen on {self.listen} (deploy.listen): "
                                 f"{exc.strerror or exc}",
                                 hint="ports below 1024 need root; the host must be an address "
                                      "of this machine") from exc

    def _listen_taken(self) -> InfraError:
        return InfraError(f"port {self._address[1]} is already in use: the router cannot listen "
                          f"on {self.listen} (deploy.listen)",
                          hint="stop what listens there (`ss -ltnp`) or set deploy.listen to a "
                               "free port")


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _children(parent: int) -> list[int]:
    """Pids whose parent is `parent` (a scan of /proc/*/stat: /proc/PID/task/*/children needs a
    kernel option some containers lack)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(parent) and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _state(pid) not in (None, "Z", "X"):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _nginx_message(output: str) -> str:
    """nginx's own complaint: its [emerg]/[alert] lines, without the `test failed` trailer."""
    lines = [line.strip() for line in output.splitlines()
             if "[emerg]" in line or "[alert]" in line or "[crit]" in line]
    return "; ".join(lines) or output.strip() or "no output"


def _new_emerg(log: Path, offset: int) -> str | None:
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if "[emerg]" in line]
    return "; ".join(lines) or None
