"""One script for every loop adapter: the same ping/pong server built on
poll (examples/pingpong.c), epoll, libuv and libevent must behave the
same, so the adapters cannot drift apart. That includes the cross-thread
path: ws_post from a worker thread (--post-every) and the adapter's wake."""
import asyncio
import json
import signal
import os
import select
import socket
import subprocess
import sys
import time

import pytest

from conftest import (BUILD, TIMEOUT, answered_during_drain, arun, close_code, connect,
                      cpu_seconds, recv_head, recv_json,
                      masked_text, raw_client, recv_until_eof, refused_status,
                      upgrade_request)
from flood import Flood
from unread_input import fail_with_input_unread
from wsmux_proc import need_ipv6

ADAPTERS = ["pingpong", "pingpong_epoll", "pingpong_libuv", "pingpong_libevent"]


@pytest.fixture(params=ADAPTERS)
def server(request, start_server):
    return start_server(request.param)


def test_ping_pong_and_echo(server):
    async def run():
        async with connect(f"{server.ws}/ws?device_id=a") as ws:
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
            msg = '{"action":"echo","data":{"x":[1,2,"three"]}}'
            await ws.send(msg)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == msg
    arun(run())


@pytest.mark.parametrize("name", ADAPTERS + ["reuseport", "mhd"])
def test_ipv6_loopback_and_a_url_one_can_paste(start_server, name):
    """On ::1 each example serves, and announces http://[::1]:PORT/ (the
    start_server fixture only accepts an IPv6 host in brackets)."""
    need_ipv6()
    server = start_server(name, host="::1")
    assert server.ws.startswith("ws://[::1]:"), server.ws

    async def run():
        async with connect(f"{server.ws}/ws?device_id=v6") as ws:
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
    arun(run())


def test_broadcast_reaches_everyone(server):
    async def run():
        clients = [await connect(f"{server.ws}/ws?device_id=d{i}") for i in range(8)]
        try:
            await clients[3].send('{"action":"broadcast","data":{"n":42}}')
            for ws in clients:
                assert await recv_json(ws) == {"action": "bc", "data": {"n": 42}}
            # no data member: none in the broadcast either
            await clients[0].send('{"action":"broadcast"}')
            for ws in clients:
                assert await recv_json(ws) == {"action": "bc"}
        finally:
            for ws in clients:
                await ws.close()
    arun(run())


def test_pipelined_large_echoes_in_order(server):
    """4 MiB of echoes sent before reading any reply: the server's writes
    block, the adapter's want_write / writable path must deliver every
    byte, in order."""
    async def run():
        async with connect(f"{server.ws}/ws?device_id=big") as ws:
            n, pad = 64, "x" * 60000
            for i in range(n):
                await ws.send(json.dumps({"action": "echo", "data": [i, pad]}))
            for i in range(n):
                assert (await recv_json(ws))["data"] == [i, pad]
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
    arun(run())


def test_refusals(server):
    async def run():
        assert await refused_status(f"{server.ws}/ws") == 400
        assert await refused_status(f"{server.ws}/nope?device_id=x") == 404
    arun(run())
    # A plain GET on the WebSocket path: 426 on every adapter (the page's
    # on_http does not answer it; pingpong answered 404).
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(f"GET /ws HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 426 ")


def test_a_failed_client_gets_its_close_frame_without_a_reset(server):
    """1009 at the header of a too large message, with 72 KiB of it still
    unread in the server's socket: the adapter drops that input before it
    closes, so the close is a FIN behind the close frame, not a reset."""
    assert fail_with_input_unread(server, raw_client(server, "big")) == (1009, "eof")


def test_unknown_action_keeps_connection(server):
    async def run():
        async with connect(f"{server.ws}/ws?device_id=u") as ws:
            await ws.send('{"action":"nope"}')
            err = await recv_json(ws)
            assert err["action"] == "error"
            assert err["data"]["code"] == "unknown_action"
            await ws.send('{"action":"ping"}')
            assert (await recv_json(ws))["action"] == "pong"
    arun(run())


def test_client_disconnect_then_others_go_on(server):
    async def run():
        a = await connect(f"{server.ws}/ws?device_id=a")
        b = await connect(f"{server.ws}/ws?device_id=b")
        a.transport.abort()  # no close frame
        await b.send('{"action":"broadcast","data":1}')
        assert await recv_json(b) == {"action": "bc", "data": 1}
        await b.close()
    arun(run())


def test_sigterm_closes_clients_with_1001(server):
    async def run():
        clients = [await connect(f"{server.ws}/ws?device_id=s{i}") for i in range(3)]
        await clients[0].send('{"action":"ping"}')
        await recv_json(clients[0])
        server.proc.send_signal(signal.SIGTERM)
        codes = [await close_code(ws) for ws in clients]
        assert codes == [1001] * 3
    arun(run())
    assert server.proc.wait(timeout=TIMEOUT) == 0
    assert "stopped" in server.wait_line("stopped")


POST_EVERY_MS = 50


@pytest.mark.parametrize("name", ADAPTERS)
def test_post_from_thread_wakes_idle_loop(start_server, name):
    """--post-every 50: a worker thread ws_posts {"action":"tick","data":N}
    every 50 ms. The client only listens, so nothing but the adapter's wake
    (eventfd, self-pipe, uv_async_send, event_active) can make the loop tick
    and deliver: with no deadline for 30 s (the ping interval), libuv and
    libevent would deliver nothing at all. The epoll and poll examples cap
    their wait (500 ms, 1 s), so without the wake their ticks would still
    come, in bursts at each cap: hence the check that most ticks arrive one
    by one, not just that they arrive."""
    server = start_server(name, "--post-every", str(POST_EVERY_MS))

    async def run():
        loop = asyncio.get_running_loop()
        got = []  # (arrival time, N)
        async with connect(f"{server.ws}/ws?device_id=t", ping_interval=None) as ws:
            end = loop.time() + 3.0
            while len(got) < 20:
                left = end - loop.time()
                if left <= 0:
                    break
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), left))
                except asyncio.TimeoutError:
                    break
                assert msg["action"] == "tick", msg
                assert isinstance(msg["data"], int), msg
                got.append((loop.time(), msg["data"]))
        return got

    got = arun(run())
    ns = [n for _, n in got]
    assert len(ns) >= 5, f"{len(ns)} ticks in 3 s: {ns}"
    # One posting thread, one receiver: in order, none lost.
    assert ns == list(range(ns[0], ns[0] + len(ns))), ns
    gaps = [b - a for (a, _), (b, _) in zip(got, got[1:])]
    apart = sum(g >= POST_EVERY_MS * 0.4 / 1000 for g in gaps)
    assert apart * 2 >= len(gaps), \
        f"ticks came in bursts, not as posted: gaps {[round(g, 3) for g in gaps]}"


@pytest.mark.parametrize("name", ADAPTERS)
def test_out_of_descriptors_sheds_instead_of_spinning(start_server, name):
    """RLIMIT_NOFILE 40: connections past it are accepted and closed at once
    (a spare descriptor in wsa_accept; libuv has its own) instead of left in
    the backlog, where the level-triggered listener stays readable and the
    loop spun at 100% CPU. Once descriptors are free the server serves."""
    server = start_server(name, nofile=40)
    fd_dir = f"/proc/{server.proc.pid}/fd"
    before = len(os.listdir(fd_dir))
    socks = []
    try:
        for _ in range(80):
            socks.append(socket.create_connection((server.host, server.port),
                                                  timeout=TIMEOUT))
        time.sleep(0.5)
        cpu0 = cpu_seconds(server.proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(server.proc.pid) - cpu0
        # Spinning is a whole core (about 1.0 s in 1 s); idle is ~0.
        assert used < 0.5, f"{name} used {used:.2f} s of CPU in 1 s while full"
        shed = 0
        for s in socks:
            s.settimeout(0.05)
            try:
                shed += s.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                pass
        assert shed > 0, "no connection was shed"
    finally:
        for s in socks:
            s.close()

    async def run():
        async with connect(f"{server.ws}/ws?device_id=after") as ws:
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
    # The server must first see the 80 closes and free their descriptors
    # (a loaded machine can delay that past any fixed sleep); a client
    # that came before would be shed like the others.
    end = time.monotonic() + TIMEOUT
    while len(os.listdir(fd_dir)) > before and time.monotonic() < end:
        time.sleep(0.02)
    arun(run())



def test_the_poll_table_refuses_past_its_size(start_server):
    """adapters/poll.h keeps its sockets in a fixed table (WSA_POLL_MAX
    entries, two of them the listener and the wake pipe): a connection past
    it is closed at accept, nothing is written past the table (the ASan
    build sees a write past it), and the sockets in it are served."""
    server = start_server("pingpong", nofile=8192)
    socks = []
    try:
        for _ in range(4096 + 8):
            socks.append(socket.create_connection((server.host, server.port),
                                                  timeout=TIMEOUT))
        kept = (0, 2047, 4093)  # first, middle and last in the table
        # Their requests go now: the first socket's 10 s handshake
        # deadline runs from its accept, and on a loaded machine the
        # connections above and the wait below can take most of it.
        for i in kept:
            socks[i].settimeout(TIMEOUT)
            socks[i].sendall(upgrade_request(server, f"t{i}"))
        poller = select.poll()
        for i, s in enumerate(socks):
            if i not in kept:
                poller.register(s, select.POLLIN)
        by_fd = {s.fileno(): i for i, s in enumerate(socks)}
        # The last connections may still wait in the listener's backlog
        # when the loop above ends (a loaded machine, the ASan build): wait
        # for the server to shed as many as it must (EOF: readable), not a
        # fixed 0.5 s, then take the set.
        end = time.monotonic() + 5
        while (len(poller.poll(0)) < 10 and time.monotonic() < end):
            time.sleep(0.02)
        shed = sorted(by_fd[fd] for fd, _ in poller.poll(0))
        assert shed == list(range(4094, 4096 + 8)), shed[:20]
        for i in kept:
            assert recv_head(socks[i]).startswith(b"HTTP/1.1 101 "), i
            socks[i].sendall(masked_text(b'{"action":"ping"}'))
            assert b'"pong"' in socks[i].recv(4096), i
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("name", ADAPTERS)
def test_peer_that_never_reads_is_let_go(start_server, name):
    """A client that never reads while another broadcasts 300 x 30 KB: the
    queue cap closes it (its close frame cannot reach it either, so the
    close timeout ends it; the code, 4001, is checked by the unit and faults
    tiers, which can read it), and the server lets its socket go within
    seconds. The libuv adapter waited for its last uv_write forever (the
    peer's window stays shut); it now waits WSA_UV_LINGER_MS at most."""
    server = start_server(name)
    fd_dir = f"/proc/{server.proc.pid}/fd"
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(TIMEOUT)
    try:
        async def run():
            async with connect(f"{server.ws}/ws?device_id=sender") as ws:
                before = len(os.listdir(fd_dir))
                stuck.connect((server.host, server.port))
                stuck.sendall(upgrade_request(server, "stuck"))
                await asyncio.sleep(0.3)  # its upgrade is in
                msg = json.dumps({"action": "broadcast", "data": "x" * 30000})
                for _ in range(300):
                    await ws.send(msg)
                    assert (await recv_json(ws))["action"] == "bc"
                loop = asyncio.get_running_loop()
                end = loop.time() + 15
                while loop.time() < end and len(os.listdir(fd_dir)) > before:
                    await asyncio.sleep(0.2)
                assert len(os.listdir(fd_dir)) <= before, \
                    f"{name} still holds the socket"
        arun(run(), timeout=60)
    finally:
        stuck.close()


@pytest.mark.parametrize("name", ADAPTERS)
def test_a_request_left_unfinished_gets_408_at_the_deadline(start_server, name):
    """A request begun and never finished: at the handshake deadline (10 s)
    the server answers 408 and closes (RFC 9110 15.5.9), on every adapter:
    the library queues the answer, the adapter writes it before the socket
    goes. A socket that sent nothing is closed at the same deadline without
    a word, and a client served meanwhile is not held up."""
    server = start_server(name)
    begun = socket.create_connection((server.host, server.port), timeout=15)
    silent = socket.create_connection((server.host, server.port), timeout=15)
    try:
        begun.sendall(upgrade_request(server, "slow")[:40])
        started = time.monotonic()

        async def served():
            async with connect(f"{server.ws}/ws?device_id=meanwhile") as ws:
                await ws.send(json.dumps({"action": "ping"}))
                assert await recv_json(ws) == {"action": "pong", "data": ""}
        arun(served())
        answer = recv_until_eof(begun)
        waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
        assert b"\r\nConnection: close\r\n" in answer, answer
        assert 9 < waited < 14, waited
        assert silent.recv(4096) == b"", "a silent socket got an answer"
    finally:
        begun.close()
        silent.close()


@pytest.mark.parametrize("name", ADAPTERS)
def test_sigterm_with_peers_that_never_read_exits_cleanly(start_server, name):
    """Clients that asked for echoes and never read hold output queued (under
    the cap) when SIGTERM comes: the drain cannot finish, and the server
    must still exit 0, in bounded time, with no sanitizer or libuv abort.
    pingpong_libuv's exit guard closed the adapter's lingering sockets and
    their timers, and libuv aborted on closing a timer twice."""
    server = start_server(name)
    socks = []
    try:
        echo = masked_text(json.dumps({"action": "echo",
                                       "data": "z" * 30000}).encode())
        for i, count in enumerate((40, 80, 120)):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(TIMEOUT)
            s.connect((server.host, server.port))
            s.sendall(upgrade_request(server, f"nr{i}"))
            s.sendall(echo * count)
            socks.append(s)
        time.sleep(1)
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=2 * TIMEOUT) == 0, server.stderr[-5:]
        assert time.monotonic() - start < 2 * TIMEOUT
        server.wait_line("stopped")
    finally:
        for s in socks:
            s.close()


def test_sigterm_under_load_stops_the_server(server):
    """Clients that keep every wait of the loop busy: SIGTERM still stops
    it. pingpong_epoll let the signal in only inside epoll_pwait, where the
    kernel delivers it only when no fd is ready, and ran on for as long as
    the load did; it now reads it from a signalfd in the same epoll set."""
    with Flood(server.host, server.port, "/ws?device_id=flood-"):
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=TIMEOUT) == 0, server.stderr[-5:]
    server.wait_line("stopped")


def test_second_signal_during_the_drain_is_ignored(server):
    """A peer that never answers the close keeps the drain going; a second
    SIGTERM then must not kill the server. pingpong_libuv and
    pingpong_libevent removed their signal watchers at the first one, which
    gave the second its default action."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(upgrade_request(server, "quiet"))
        assert s.recv(4096).startswith(b"HTTP/1.1 101 ")
        server.proc.send_signal(signal.SIGTERM)
        assert s.recv(4096)[:1] == b"\x88", "the 1001 close: the drain began"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=TIMEOUT) == 0, server.stderr[-5:]
    server.wait_line("stopped")


def test_connect_during_the_drain_is_answered(server):
    """After SIGTERM no new client may wait on a listening socket that is
    no longer accepted from (reuseport and mhd kept theirs open until
    exit, review 8): refused at once, or answered."""
    answered_during_drain(server)
    assert server.proc.wait(timeout=TIMEOUT) == 0, server.stderr[-5:]


@pytest.mark.parametrize("name", ADAPTERS)
def test_at_the_descriptor_limit_from_the_start_does_not_spin(start_server, name):
    """RLIMIT_NOFILE exactly what the server holds once started: the spare
    descriptor wsa_accept sheds connections with was taken at the first
    accept, too late, and the poll and libevent hosts then spun on a
    listener that stayed readable. wsa_listen takes it up front."""
    probe = start_server(name)
    fds = max(int(x) for x in os.listdir(f"/proc/{probe.proc.pid}/fd")) + 1
    assert probe.stop() == []
    server = start_server(name, nofile=fds)
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT):
        time.sleep(0.3)
        cpu0 = cpu_seconds(server.proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(server.proc.pid) - cpu0
    assert used < 0.5, f"{name} used {used:.2f} s of CPU in 1 s"


# A client process that pipelines small messages as fast as the server
# takes them and reads every reply: argv host port request-hex seconds.
FLOOD_CLIENT = r"""
import socket, sys, threading, time
host, port, req, secs = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), float(sys.argv[4])
frame = bytes([0x81, 0x80 | 15, 0, 0, 0, 0]) + b'{"action":"zz"}'  # mask 0
burst = frame * 20000
s = socket.create_connection((host, port), timeout=5)
s.sendall(req)
stop = time.monotonic() + secs
def drain():
    try:
        while time.monotonic() < stop and s.recv(1 << 20):
            pass
    except OSError:
        pass
threading.Thread(target=drain, daemon=True).start()
try:
    while time.monotonic() < stop:
        s.sendall(burst)
except OSError:
    pass
"""


WINDOWS = 3


@pytest.mark.parametrize("name", ADAPTERS)
def test_a_flooding_client_does_not_starve_the_others(start_server, name):
    """Three client processes pipeline small messages as fast as they can
    (reading their error replies), while a fourth client sends pings one
    at a time. libuv reads a readable socket up to 32 times in a row: with
    64 KiB reads that was 2 MiB of one client's messages per loop turn, and
    the pings waited about 100 ms each (the other adapters: a few ms). The
    libuv adapter now reads one buffer per socket per iteration (12 ms
    here, the others 2-4 ms). The bound is loose (a shared machine). Under
    ASan every server is slower and the floods fill less (fixed libuv
    26-45 ms, the old one 84 ms): there the bound is four times looser and
    the run checks memory safety under a flood; the plain build's run is
    the one that tells the old adapter (137 ms) from the new.
    The machine is shared (pytest-xdist runs other tests beside this
    one): a 3 s window whose median a burst of outside load pushed past
    the bound (32 ms for the fixed libuv adapter beside two busy loops) is
    measured again, up to WINDOWS times. Under sustained load (the other
    flooding tests, busy loops) the server gets a sixth of a core and every
    median is the loop turn stretched six times (libuv 42-58 ms here): so a
    window also passes when the server's own CPU time per round trip, the
    flood work the ping waited behind, is under the bound (the fixed libuv
    adapter 6-8 ms; the old one 160-173 ms, loaded or not). The old
    adapter's delay is its own, in every window (each loop turn reads
    2 MiB per flooder), so it still fails every one of them."""
    bound = 0.16 if "asan" in BUILD else 0.04
    server = start_server(name)
    floods = [subprocess.Popen(
        [sys.executable, "-c", FLOOD_CLIENT, server.host, str(server.port),
         upgrade_request(server, f"flood{i}").hex(), str(1.5 + 3 * WINDOWS + 3)])
        for i in range(3)]
    try:
        time.sleep(1.5)  # the floods' backlog builds up in the kernel

        async def run():
            windows = []  # (median wall time, server CPU) per round trip
            async with connect(f"{server.ws}/ws?device_id=victim") as ws:
                for _ in range(WINDOWS):
                    waits = []
                    cpu0 = cpu_seconds(server.proc.pid)
                    end = time.monotonic() + 3
                    while time.monotonic() < end:
                        t0 = time.monotonic()
                        await ws.send('{"action":"ping"}')
                        assert await recv_json(ws) == {"action": "pong", "data": ""}
                        waits.append(time.monotonic() - t0)
                    cpu = cpu_seconds(server.proc.pid) - cpu0
                    windows.append((sorted(waits)[len(waits) // 2],
                                    cpu / len(waits)))
                    if min(windows[-1]) < bound:
                        break
            return windows
        windows = arun(run(), timeout=60)
        shown = ", ".join(f"{m * 1000:.1f} ({c * 1000:.1f} CPU)"
                          for m, c in windows)
        print(f"{name}: median ping {shown} ms")
        assert min(min(w) for w in windows) < bound, \
            f"{name}: median ping (server CPU per ping) {shown} ms"
    finally:
        for p in floods:
            p.kill()
            p.wait()
