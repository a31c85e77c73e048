"""Fixtures for the integrations tier.

Each example under test (build/examples/<name>) runs as a child process on
a loopback port it picks itself (--port 0) and announces on stdout
("listening on http://HOST:PORT/"). Children get PR_SET_PDEATHSIG so they
die with pytest; every fixture stops its servers with SIGTERM at teardown
and fails the test if one hangs or exits non-zero. No sleeps: every wait is
for a line, a message or an exit, bounded by TIMEOUT.
"""
import asyncio
import ctypes
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
TIMEOUT = 10.0  # seconds, for any single wait

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example(name):
    path = os.path.join(BUILD, "examples", name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built (run `make all`)")
    return path


class Server:
    LISTEN_RE = re.compile(r"listening on (\w+)://([0-9.]+):(\d+)/")

    def __init__(self, name, args=()):
        self.name = name
        self.lines = queue.Queue()
        self.seen = []
        self.stderr = []
        last = None
        # Not every example reports the port the kernel picked for --port 0,
        # so take a free one; retry if it is taken in between.
        for _ in range(5):
            port = free_port()
            self.proc = subprocess.Popen(
                [example(name), "--host", "127.0.0.1", "--port", str(port), *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, bufsize=1,
                preexec_fn=_die_with_parent)
            self.lines = queue.Queue()
            self._out = threading.Thread(target=self._pump, daemon=True)
            self._out.start()
            self._err = threading.Thread(target=self._collect_err, daemon=True)
            self._err.start()
            try:
                m = self.LISTEN_RE.search(self.wait_line("listening on"))
            except AssertionError as e:
                last = e
                self.proc.kill()
                self.proc.wait(timeout=5)
                continue
            assert m and int(m.group(3)) == port
            self.scheme, self.host, self.port = m.group(1), m.group(2), port
            return
        raise last

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _collect_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_line(self, pattern, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no /{pattern}/ in {timeout}s; "
                                     f"saw {self.seen[-10:]} stderr {self.stderr[-5:]}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{self.name} exited ({self.proc.poll()}) before "
                                     f"/{pattern}/; stderr {''.join(self.stderr[-5:])}")
            self.seen.append(line)
            if rx.search(line):
                return line

    @property
    def ws(self):
        return f"{'wss' if self.scheme == 'https' else 'ws'}://{self.host}:{self.port}"

    @property
    def http(self):
        return f"{self.scheme}://{self.host}:{self.port}"

    def stop(self):
        """SIGTERM, then a bounded wait: returns a list of problems."""
        problems = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"{self.name} ignored SIGTERM for {TIMEOUT}s")
                self.proc.kill()
                self.proc.wait(timeout=5)
        # Both pumps end at EOF; join them before closing their pipes.
        self._out.join(timeout=2)
        self._err.join(timeout=2)
        if self.proc.returncode != 0 and not problems:
            problems.append(f"{self.name} exited with {self.proc.returncode}: "
                            f"{''.join(self.stderr[-5:])}")
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        return problems


@pytest.fixture
def start_server():
    """Factory: start_server(name, *args) -> Server; stopped at teardown."""
    started = []

    def start(name, *args):
        s = Server(name, args)
        started.append(s)
        return s

    yield start
    problems = []
    for s in started:
        problems += s.stop()
    if problems:
        pytest.fail("\n".join(problems))


def arun(coro, timeout=TIMEOUT * 3):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def recv_json(ws, timeout=TIMEOUT):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def connect(url, **kw):
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("close_timeout", 2)
    kw.setdefault("max_size", 2 ** 22)
    return websockets.connect(url, **kw)


async def close_code(ws, timeout=TIMEOUT):
    """Waits for the server to close ws; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.exceptions.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


async def refused_status(url, **kw):
    try:
        async with connect(url, **kw):
            pass
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    raise AssertionError(f"{url}: upgrade was accepted")
