"""Backpressure through every loop adapter: a client that stops reading
for a while and then reads must get every byte, and the loop must go idle
again afterwards (write interest dropped once the queue is empty)."""
import socket
import time

import pytest
from backpressure import close_half_close_and_read, fill, idle_cpu, read_echoes
from conftest import cpu_seconds, raw_client

ADAPTERS = ["pingpong", "pingpong_epoll", "pingpong_libuv", "pingpong_libevent"]


# mhd: its transport callbacks wrap the epoll adapter's once MHD hands the
# socket over; no other test made them wait.
@pytest.mark.parametrize("name", ADAPTERS + ["mhd"])
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
    # A client that comes before the pauser and leaves after it: its slot
    # is freed under the pauser (poll.h moves the last entry into a closed
    # one's place; the moved socket's index must follow it).
    early = raw_client(server, "early")
    with raw_client(server, "pauser", rcvbuf=4096) as s:
        early.close()
        time.sleep(0.2)
        sent = fill(s, server.port)
        time.sleep(0.5)
        got, end = read_echoes(s, sent)
        assert (got, end) == (list(range(sent)), None), \
            f"{name}: {len(got)} of {sent} echoes, then {end}"
        # Still connected, and nothing left to write to it: the loop idles.
        used = idle_cpu(server.proc.pid)
    assert used < 0.25, f"{name} used {used:.2f} s of CPU in 1 s while idle"


@pytest.mark.parametrize("name", ADAPTERS + ["mhd"])
def test_a_client_that_half_closes_after_its_close_frame_gets_everything(
        start_server, name):
    """A client makes the server hold its output as above, then sends its
    close frame and half-closes (FIN) before reading anything. Every
    adapter aborted on that EOF (on_close 1006; the echoes the library
    still held and the close frame dropped: the client got what the kernel
    held, then FIN). After the peer's close frame an EOF only ends
    reading: every echo, then the close frame, then FIN."""
    server = start_server(name)
    with raw_client(server, "half", rcvbuf=4096) as s:
        sent = fill(s, server.port)
        got, end, took = close_half_close_and_read(
            s, sent, lambda s: s.shutdown(socket.SHUT_WR))
        assert (got, end) == (list(range(sent)), 1000), \
            f"{name}: {len(got)} of {sent} echoes, then {end} ({took:.1f} s)"
        assert s.recv(1) == b""


@pytest.mark.parametrize("name", ADAPTERS)
def test_the_wake_is_consumed(start_server, name):
    """--post-every 50: a worker thread posts a tick every 50 ms and the
    adapter's wake (self-pipe, eventfd, uv_async, event_active) makes the
    loop deliver it. The wake must also be consumed: a pipe or eventfd left
    readable wakes a level-triggered loop at once, forever, and the ticks
    still arrive on time, so test_post_from_thread_wakes_idle_loop cannot
    tell. Here the loop must stay near idle while the ticks come."""
    server = start_server(name, "--post-every", "50")
    with raw_client(server, "listener") as s:
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
