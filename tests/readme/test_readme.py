"""The README's complete host and its loop snippets (epoll, its poll
variant, libuv, libevent; made programs by serve_main.c), compiled by
tier.mk, driven by a real client."""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import websockets

HOST_BIN = os.environ["README_HOST_BIN"]
SERVE_DIR = os.environ["README_SERVE_DIR"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start(argv, ready):
    """argv + [PORT] on a free port, once ready(proc, port) returns. The
    port can be taken between free_port and the child's bind (an outgoing
    connection's ephemeral port, anywhere on the machine): a child that
    exited with an error while the port is in use was beaten to it, and is
    started again on another; anything else fails the test."""
    for attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(argv + [str(port)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            ready(proc, port)
            return proc, port
        except AssertionError:
            if proc.poll() is None:
                proc.kill()
            beaten = proc.wait(5) > 0 and port_taken(port)
            if not beaten or attempt == 4:
                raise


async def session(port):
    # The id comes back as JSON text, whatever its bytes: a quote and a
    # backslash (percent-encoded in the query) must be escaped.
    for query, want in (("abc", "abc"), ("a%22b%5Cc", 'a"b\\c')):
        uri = f"ws://127.0.0.1:{port}/ws?device_id={query}"
        async with websockets.connect(uri) as ws:
            await ws.send('{"action":"hello"}')
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply == {"action": "hello", "data": want}, reply
    uri = f"ws://127.0.0.1:{port}/ws?device_id=abc"
    async with websockets.connect(uri) as ws:
        await ws.send('{"action":"nope"}')
        err = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert err["action"] == "error"
        assert err["data"]["code"] == "unknown_action"


async def still_serving(port):
    uri = f"ws://127.0.0.1:{port}/ws?device_id=after"
    async with websockets.connect(uri) as ws:
        await ws.send('{"action":"hello"}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply == {"action": "hello", "data": "after"}, reply


def announced(proc, port):
    line = proc.stdout.readline()
    assert line.startswith("listening"), (line, proc.poll())


def test_readme_host():
    proc, port = start([HOST_BIN], announced)
    try:
        asyncio.run(session(port))
        # The host must outlive the sessions it closed: a crash in its
        # close path comes after each client already had its close reply.
        asyncio.run(still_serving(port))
        assert proc.poll() is None, f"host exited with {proc.returncode}"
    finally:
        proc.kill()
        proc.wait(5)
        err = proc.stderr.read()
    assert not re.search(r"Sanitizer|runtime error:", err), err


def wait_listening(proc, port, seconds=10):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} after {seconds} s")


async def ping_then_sigterm(proc, port):
    uri = f"ws://127.0.0.1:{port}/ws?device_id=d1"
    async with websockets.connect(uri) as ws:
        await ws.send('{"action":"ping"}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply == {"action": "pong", "data": ""}, reply
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1001, (ws.close_code, ws.close_reason)


@pytest.mark.parametrize("loop", ["epoll", "poll", "libuv", "libevent"])
def test_readme_loop_snippet(loop):
    """The snippet serves, and SIGTERM drains its clients (1001), exit 0."""
    proc, port = start([os.path.join(SERVE_DIR, "serve_" + loop)],
                       wait_listening)
    try:
        asyncio.run(ping_then_sigterm(proc, port))
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        out, err = proc.communicate()
    assert "stopped: 0" in out, (out, err)
    assert not re.search(r"Sanitizer|runtime error:", err), err


UPGRADE = (b"GET /ws?device_id=mute HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def read_until(s, got, done):
    while not done(got):
        data = s.recv(4096)
        assert data, got
        got += data
    return got


def test_readme_epoll_drain_ends_after_a_stop():
    """The epoll snippet's drain ends when its deadline passed while the
    process was stopped (Ctrl-Z, a debugger): on SIGCONT epoll_wait fails
    with EINTR before the adapter's second tick, the next run's first tick
    ends the drain (on_shutdown), and an uncapped wait after it never
    returned (nothing was left to wake it)."""
    proc, port = start([os.path.join(SERVE_DIR, "serve_epoll")],
                       wait_listening)
    try:
        # A client that never answers the 1001: the drain runs its 5 s.
        with socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(UPGRADE)
            got = read_until(s, b"", lambda b: b"\r\n\r\n" in b)
            assert got.startswith(b"HTTP/1.1 101"), got
            proc.send_signal(signal.SIGTERM)
            # The 1001 close frame: the drain has begun.
            read_until(s, got, lambda b: b"\x88" in b.split(b"\r\n\r\n")[1])
            proc.send_signal(signal.SIGSTOP)
            time.sleep(5.5)  # past the snippet's 5000 ms drain
            proc.send_signal(signal.SIGCONT)
            assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(5)
        out, err = proc.communicate()
    assert "stopped: 0" in out, (out, err)


if __name__ == "__main__":
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", __file__]))
