"""Examples as child processes, for the pytest tiers that drive them
(tests/e2e, tests/integrations). Each tier's conftest.py imports from here.

Each server under test (build/examples/<name>) runs on a loopback port and
announces it on stdout ("NAME: listening on SCHEME://HOST:PORT/"). Children
get PR_SET_PDEATHSIG, so they die with pytest even when pytest itself is
killed; the start_server fixture stops them with SIGTERM at teardown, pass
or fail, and fails the test if one hangs, exits non-zero or printed a
sanitizer report. Nothing sleeps for synchronisation: every wait is for a
line, a message or an exit, bounded by TIMEOUT.
"""
import asyncio
import ctypes
import json
import os
import queue
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
TIMEOUT = 10.0  # seconds, for any single wait

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn for children: SIGKILL when the parent (pytest) dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_setup(nofile):
    """preexec_fn: _die_with_parent, and RLIMIT_NOFILE when nofile."""
    def setup():
        _die_with_parent()
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return setup


def cpu_seconds(pid):
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(host="127.0.0.1"):
    """A port the kernel just handed out; the server binds it right after."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def need_ipv6():
    """Skips the test on a machine without an IPv6 loopback (a container
    with IPv6 turned off); pytest's summary line counts it as skipped.
    WSMUX_NEED_IPV6=1 makes that a failure, for a machine known to have
    one."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as e:
        if os.environ.get("WSMUX_NEED_IPV6") == "1":
            pytest.fail(f"no IPv6 loopback ({e}) and WSMUX_NEED_IPV6=1")
        pytest.skip("no IPv6 loopback")


def example(name):
    path = os.path.join(BUILD, "examples", name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built (run `make all`)")
    return path


class Server:
    """A running example. Its stdout lines are collected by a thread.

    port None takes a free one (checked against the one announced; retried
    if taken in between); port 0 lets the example pick and report it."""

    # A URL one can paste: an IPv6 host in brackets.
    LISTEN_RE = re.compile(r"listening on (\w+)://(\[[0-9a-fA-F:]+\]|[0-9.]+):(\d+)/")
    PORT_TAKEN_RE = re.compile(r"address already in use", re.IGNORECASE)
    SANITIZER_RE = re.compile((Path(__file__).resolve().parents[1] / "support" /
                               "sanitizer.re").read_text().strip())

    def __init__(self, name, args=(), host="127.0.0.1", port=None, stdin=False,
                 nofile=None, env=None):
        self.name = name
        self.host = host
        self.seen = []
        last = None
        for _ in range(5):
            want = free_port(host) if port is None else port
            self.proc = subprocess.Popen(
                [example(name), "--host", host, "--port", str(want), *args],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                preexec_fn=_child_setup(nofile),
                env={**os.environ, **env} if env else None,
            )
            self.lines = queue.Queue()
            self.stderr = []
            self._out_thread = threading.Thread(target=self._pump, daemon=True)
            self._out_thread.start()
            self._err_thread = threading.Thread(target=self._collect_err, daemon=True)
            self._err_thread.start()
            try:
                line = self.wait_line("listening on")
            except AssertionError as e:
                last = e
                exited = self.proc.poll() is not None
                self.kill()
                # Retried only for a port taken in between (the example
                # says so and exits): a crash, a hang or any other error
                # at start fails the test, whatever it printed.
                err = "".join(self.stderr)
                if port is None and exited and self.PORT_TAKEN_RE.search(err):
                    continue
                raise AssertionError(f"{name} did not start (exit "
                                     f"{self.proc.returncode}): {e}\n{err}")
            m = self.LISTEN_RE.search(line)
            assert m, line
            self.scheme, self.port = m.group(1), int(m.group(3))
            assert port == 0 or self.port == want, line
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
        """The next stdout line matching pattern (a regex); skips others."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no line /{pattern}/ in {timeout}s; "
                                     f"saw {self.seen[-10:]} stderr {self.stderr[-5:]}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{self.name} exited ({self.proc.poll()}) before "
                                     f"/{pattern}/; saw {self.seen[-10:]} "
                                     f"stderr {''.join(self.stderr[-5:])}")
            self.seen.append(line)
            if rx.search(line):
                return line

    def command(self, line, answer=r"^(ok|error) "):
        """Writes a command on stdin (stdin=True) and returns its answer line."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.wait_line(answer)

    def _authority(self):
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"

    @property
    def http(self):
        return f"{'https' if self.scheme == 'https' else 'http'}://{self._authority()}"

    @property
    def ws(self):
        return f"{'wss' if self.scheme == 'https' else 'ws'}://{self._authority()}"

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=TIMEOUT):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        """Graceful stop (SIGTERM) as the last check of every test: returns
        a list of problems (non-zero exit, hang, sanitizer reports)."""
        problems = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"{self.name} ignored SIGTERM for {TIMEOUT}s")
        self.kill()
        if self.proc.returncode not in (0, None) and not problems:
            problems.append(f"{self.name} exited with {self.proc.returncode}: "
                            f"{''.join(self.stderr[-5:])}")
        err = "".join(self.stderr)
        if self.SANITIZER_RE.search(err):
            problems.append(f"{self.name} sanitizer report:\n{err}")
        return problems

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The reader threads end at EOF; close the pipes only after them.
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self._out_thread.join(timeout=2)
        self._err_thread.join(timeout=2)
        for f in (self.proc.stdout, self.proc.stderr):
            if f and not (self._out_thread.is_alive() or self._err_thread.is_alive()):
                f.close()


@pytest.fixture
def start_server():
    """Factory: start_server(name, *args, **kw) -> Server (kw: host, port,
    stdin, nofile, env: variables added to ours); all stopped at
    teardown."""
    started = []

    def start(name, *args, **kw):
        s = Server(name, args, **kw)
        started.append(s)
        return s

    yield start
    problems = []
    for s in started:
        problems += s.stop()
    if problems:
        pytest.fail("\n".join(problems))


def arun(coro, timeout=TIMEOUT * 2):
    """Runs one test coroutine with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def recv_json(ws, timeout=TIMEOUT):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def close_code(ws, timeout=TIMEOUT):
    """Waits for the server to close ws; returns the close code received."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.exceptions.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


def connect(url, **kw):
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("close_timeout", 2)
    return websockets.connect(url, **kw)


def raw_upgrade(host, target):
    """A raw upgrade request for target (path and query), for clients
    that write bytes (and may never read)."""
    return (f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def upgrade_request(server, device):
    """raw_upgrade for /ws?device_id=device on server."""
    return raw_upgrade(server.host, f"/ws?device_id={device}")


def masked_text(payload: bytes) -> bytes:
    """One masked client text frame (RFC 6455 5.2), for clients that
    write raw."""
    return masked_frame(0x1, payload)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, final client frame of this opcode."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (
        bytes([0x80 | n]) if n < 126 else
        bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else
        bytes([0x80 | 127]) + n.to_bytes(8, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_client(server, device, rcvbuf=None, wrap=None):
    """A raw socket upgraded to /ws?device_id=device (the 101 read whole);
    rcvbuf shrinks its receive buffer (set before connecting); wrap, if
    given, turns the connected socket into another (a TLS one) first."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(TIMEOUT)
    s.connect((server.host, server.port))
    if wrap:
        s = wrap(s)
    s.sendall(upgrade_request(server, device))
    head = recv_head(s)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return s


def recv_head(sock):
    """An HTTP response head up to its blank line, read a byte at a time
    so that nothing after it (a first frame) is taken; less if the peer
    closes first."""
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    return head


def recv_until_eof(sock):
    """Everything the peer sends until it closes (a plain HTTP answer: the
    server closes after every one)."""
    raw = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return raw
        raw += chunk


def read_frame(sock):
    """One unmasked server frame: (opcode, payload). EOFError when the
    server closed the connection first."""
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(min(n - len(buf), 1 << 16))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    b0, b1 = exactly(2)
    n = b1 & 0x7F
    if n >= 126:
        n = int.from_bytes(exactly(2 if n == 126 else 8), "big")
    return b0 & 0x0F, exactly(n)


async def refused_status(url, **kw):
    """The HTTP status of a refused upgrade."""
    try:
        async with connect(url, **kw):
            pass
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    raise AssertionError(f"{url}: upgrade was accepted")


def answered_during_drain(server, within=1.0):
    """Holds a graceful shutdown open (a peer that never answers the 1001),
    then connects anew: the server must refuse at once (no listening
    socket) or answer (a 503, or a close), never leave the connection in a
    backlog nobody accepts from. Returns what happened, for the message."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(upgrade_request(server, "quiet"))
        assert s.recv(4096).startswith(b"HTTP/1.1 101 ")
        server.proc.send_signal(signal.SIGTERM)
        assert s.recv(4096)[:1] == b"\x88", "the 1001 close: the drain began"
        try:
            late = _connect_past_a_closing_listener(server, within)
            with late:
                late.sendall(upgrade_request(server, "late"))
                answer = late.recv(4096)
                assert answer == b"" or answer.startswith(b"HTTP/1.1 503 "), answer
                return "answered"
        except (ConnectionRefusedError, ConnectionResetError) as e:
            return type(e).__name__
        except socket.timeout:
            pytest.fail(f"a connection made during the drain got no answer in {within} s")


def _connect_past_a_closing_listener(server, within):
    """A connection to server, or the refusal. A SYN that comes as one
    listener of an SO_REUSEPORT group closes can be dropped by the kernel
    (net.ipv4.tcp_migrate_req 0: nothing moves its requests to the
    others), and connect waits for the retransmission, 1 s later: so one
    connect that got no SYN-ACK at all is tried again (the group has
    settled by then). What the test is about comes after: an accepted
    connection that is never answered (the recv times out)."""
    try:
        return socket.create_connection((server.host, server.port), timeout=within)
    except socket.timeout:
        return socket.create_connection((server.host, server.port), timeout=within)
