"""Backpressure through every loop adapter: a client that stops reading
for a while and then reads must get every byte, and the loop must go idle
again afterwards (write interest dropped once the queue is empty)."""
import json
import socket
import time

import pytest

from conftest import TIMEOUT, cpu_seconds, masked_text, upgrade_request

ADAPTERS = ["pingpong", "pingpong_epoll", "pingpong_libuv", "pingpong_libevent"]


def _kernel_send_queue(server_port, client_port):
    """Bytes in the server's socket send queue (/proc/net/tcp tx_queue)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == server_port and
                    int(remote.split(":")[1], 16) == client_port):
                return int(fields[4].split(":")[0], 16)
    return 0


@pytest.mark.parametrize("name", ADAPTERS)
def test_a_reader_that_pauses_gets_every_byte_then_the_loop_idles(start_server, name):
    """A client pipelines more echoes than the kernel's socket buffers hold
    and reads only after a pause: the adapter's send callback must answer
    "would block" (not an error), want_write must arm write readiness, the
    writable path must deliver the rest in order, and once the queue is
    empty write interest must be dropped again, or the loop spins on an
    always-writable socket. (test_pipelined_large_echoes_in_order never
    fills the kernel's buffers: loopback takes its 4 MiB.) The client sends
    until the server's kernel send queue stops growing (its send buffer is
    full, the client's window shut), then 6 more echoes (360 KB, under the
    1 MiB max_queued) that only the library can hold."""
    server = start_server(name)
    pad = "x" * 60000
    # A client that comes before the pauser and leaves after it: its slot
    # is freed under the pauser (poll.h moves the last entry into a closed
    # one's place; the moved socket's index must follow it).
    early = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    early.sendall(upgrade_request(server, "early"))
    assert early.recv(4096).startswith(b"HTTP/1.1 101 ")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(TIMEOUT)
    with s:
        s.connect((server.host, server.port))
        s.sendall(upgrade_request(server, "pauser"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        client_port = s.getsockname()[1]
        early.close()
        time.sleep(0.2)
        sent, last, still, extra = 0, -1, 0, None
        while extra is None or sent < extra:
            s.sendall(masked_text(json.dumps(
                {"action": "echo", "data": [sent, pad]}).encode()))
            sent += 1
            assert sent < 400, "the kernel send queue never filled"
            if extra is None:
                time.sleep(0.03)
                q = _kernel_send_queue(server.port, client_port)
                still = still + 1 if q <= last else 0
                last = max(last, q)
                if still >= 3:
                    extra = sent + 6
        time.sleep(0.5)
        buf, got, code = b"", [], None

        def need(n):
            nonlocal buf
            while len(buf) < n:
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise EOFError
                buf += chunk
        try:
            while len(got) < sent:
                need(2)
                n = buf[1] & 0x7F
                off = 2 + (2 if n == 126 else 8 if n == 127 else 0)
                need(off)
                if n >= 126:
                    n = int.from_bytes(buf[2:off], "big")
                need(off + n)
                op, data, buf = buf[0] & 0x0F, buf[off:off + n], buf[off + n:]
                if op == 8:
                    code = int.from_bytes(data[:2], "big")
                    break
                got.append(json.loads(data)["data"][0])
        except (EOFError, OSError) as e:
            code = repr(e)
        assert (got, code) == (list(range(sent)), None), \
            f"{name}: {len(got)} of {sent} echoes, then {code}"
        # Still connected, and nothing left to write to it: the loop idles.
        time.sleep(0.3)
        cpu0 = cpu_seconds(server.proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(server.proc.pid) - cpu0
    assert used < 0.25, f"{name} used {used:.2f} s of CPU in 1 s while idle"


@pytest.mark.parametrize("name", ADAPTERS)
def test_the_wake_is_consumed(start_server, name):
    """--post-every 50: a worker thread posts a tick every 50 ms and the
    adapter's wake (self-pipe, eventfd, uv_async, event_active) makes the
    loop deliver it. The wake must also be consumed: a pipe or eventfd left
    readable wakes a level-triggered loop at once, forever, and the ticks
    still arrive on time, so test_post_from_thread_wakes_idle_loop cannot
    tell. Here the loop must stay near idle while the ticks come."""
    server = start_server(name, "--post-every", "50")
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(upgrade_request(server, "listener"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        s.settimeout(0.2)
        got = b""
        cpu0 = cpu_seconds(server.proc.pid)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            try:
                got += s.recv(65536)
            except socket.timeout:
                pass
        used = cpu_seconds(server.proc.pid) - cpu0
    assert got.count(b'"action":"tick"') >= 5, got[:200]
    assert used < 0.25, f"{name} used {used:.2f} s of CPU in 1 s of ticks"
