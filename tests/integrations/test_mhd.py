"""examples/mhd: libmicrohttpd serves HTTP routes and upgrades /ws through
MHD's upgrade API after libwsmux's checks (ws_conn_upgrade_answer); the
routes keep working while WebSocket clients are connected."""
import asyncio
import signal
import urllib.error
import urllib.request

import socket
import time

from conftest import (TIMEOUT, answered_during_drain, arun, close_code, connect,
                      masked_text, raw_client, read_frame, recv_head, recv_json,
                      refused_status, upgrade_request)
from unread_input import fail_with_input_unread


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_routes_and_websocket_together(start_server):
    server = start_server("mhd")

    async def run():
        loop = asyncio.get_running_loop()
        get = lambda path: loop.run_in_executor(None, http_get, server.http + path)
        assert await get("/hello") == (200, "hello\n")
        clients = [await connect(f"{server.ws}/ws?device_id=m{i}") for i in range(5)]
        # HTTP while WebSockets are open, and WebSockets while HTTP runs
        assert await get("/hello") == (200, "hello\n")
        assert (await get("/nope"))[0] == 404
        await clients[0].send('{"action":"ping"}')
        assert await recv_json(clients[0]) == {"action": "pong", "data": ""}
        await clients[1].send('{"action":"echo","data":"x"}')
        assert await recv_json(clients[1]) == {"action": "echo", "data": "x"}
        results = await asyncio.gather(*(get("/hello") for _ in range(10)))
        assert results == [(200, "hello\n")] * 10
        await clients[2].send('{"action":"broadcast","data":{"k":1}}')
        for ws in clients:
            assert await recv_json(ws) == {"action": "bc", "data": {"k": 1}}
        big = '{"action":"echo","data":"%s"}' % ("z" * 60000)
        for _ in range(30):
            await clients[3].send(big)
        for _ in range(30):
            assert await asyncio.wait_for(clients[3].recv(), TIMEOUT) == big
        for ws in clients:
            await ws.close()
    arun(run())


def test_websocket_clients_cannot_shut_out_http(start_server):
    """MHD counts upgraded sockets among its connections and stops accepting
    at its limit (by default 1020, whatever the fd limit): idle WebSocket
    clients up to it made every route hang. The example sizes MHD's limit
    from RLIMIT_NOFILE (128 here: 96) and libwsmux's an eighth below (84):
    clients past it get 503 and HTTP still answers."""
    server = start_server("mhd", nofile=128)

    async def run():
        loop = asyncio.get_running_loop()
        clients = []
        for i in range(84):
            clients.append(await connect(f"{server.ws}/ws?device_id=f{i}"))
        for i in range(3):
            assert await refused_status(f"{server.ws}/ws?device_id=x{i}") == 503
        status = await loop.run_in_executor(None, http_get, server.http + "/hello")
        assert status == (200, "hello\n")
        await clients[-1].send('{"action":"ping"}')
        assert await recv_json(clients[-1]) == {"action": "pong", "data": ""}
        for ws in clients:
            await ws.close()
    arun(run())


def test_library_refusals_answered_by_mhd(start_server):
    server = start_server("mhd")

    async def run():
        assert await refused_status(f"{server.ws}/ws") == 400  # no device_id
        assert await refused_status(f"{server.ws}/ws?device_id=o",
                                    origin="http://evil.example") == 403
    arun(run())
    status, body = http_get(server.http + "/ws")  # plain GET on the ws path
    assert status == 426 and body == "upgrade required\n"
    assert http_get(server.http + "/hello") == (200, "hello\n")


def test_duplicate_device_replaces_older(start_server):
    server = start_server("mhd")

    async def run():
        old = await connect(f"{server.ws}/ws?device_id=same")
        new = await connect(f"{server.ws}/ws?device_id=same")
        assert await close_code(old) == 4000
        await new.send('{"action":"ping"}')
        assert (await recv_json(new))["action"] == "pong"
        await new.close()
    arun(run())


def test_a_failed_client_gets_its_close_frame_without_a_reset(start_server):
    """As for the loop adapters (test_adapters.py): the upgraded socket's
    unread input is dropped before MHD closes it."""
    server = start_server("mhd")
    assert fail_with_input_unread(server, raw_client(server, "big")) == (1009, "eof")


def test_sigterm_1001(start_server):
    server = start_server("mhd")

    async def run():
        ws = await connect(f"{server.ws}/ws?device_id=s")
        await ws.send('{"action":"ping"}')
        await recv_json(ws)
        server.proc.send_signal(signal.SIGTERM)
        assert await close_code(ws) == 1001
    arun(run())
    assert server.proc.wait(timeout=TIMEOUT) == 0


def raw_status_and_head(server, request):
    """Sends a raw request; returns (status, head text)."""
    import socket
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(request.encode())
        data = recv_head(s)
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return int(head.split(" ", 2)[1]), head


def test_refusals_carry_what_the_fed_path_sends(start_server):
    """The host-parsed path answers as the byte-fed one: a 426 names the
    upgrade (Upgrade and Sec-WebSocket-Version, RFC 9110 15.5.22), and more
    headers than fit (64) is a 431, not a 426 for the dropped Upgrade."""
    server = start_server("mhd")
    status, head = raw_status_and_head(
        server, f"GET /ws HTTP/1.1\r\nHost: {server.host}\r\n\r\n")
    assert status == 426, head
    assert "\r\nUpgrade: websocket" in head and "Sec-WebSocket-Version: 13" in head
    filler = "".join(f"X-F{i}: v\r\n" for i in range(70))
    status, head = raw_status_and_head(
        server, f"GET /ws?device_id=h HTTP/1.1\r\nHost: {server.host}\r\n{filler}"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n")
    assert status == 431, head


def test_http10_upgrade_refused_before_the_library_sees_it(start_server):
    """An upgrade is HTTP/1.1's. MHD refused to send the 101 for an
    HTTP/1.0 request only after libwsmux had accepted it: the client got no
    answer at all and the live connection with the same device id was
    replaced (review 8). It is a 400 now, as on the byte-fed path, and the
    live connection stays."""
    server = start_server("mhd")

    async def run():
        live = await connect(f"{server.ws}/ws?device_id=dv")
        req = upgrade_request(server, "dv").replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1)
        status, head = raw_status_and_head(server, req.decode())
        assert status == 400, head
        await live.send('{"action":"ping"}')
        assert await recv_json(live) == {"action": "pong", "data": ""}
        await live.close()
    arun(run())


def test_connect_during_the_drain_is_answered(start_server):
    """The listening socket MHD gives back at quiesce is closed at once
    (review 8: kept until exit, a client connecting during the drain waited
    2 s for a reset)."""
    server = start_server("mhd")
    answered_during_drain(server)
    assert server.proc.wait(timeout=TIMEOUT) == 0, server.stderr[-5:]


def test_a_dribbled_request_is_cut_at_the_request_deadline(start_server):
    """MHD's timeout is an idle one: a client sending a byte a second kept
    its HTTP slot for good, and enough of them locked every route out
    (review 8). A request must now arrive whole within 10 s of the
    connection (HTTP_REQUEST_S); the other routes answer meanwhile."""
    server = start_server("mhd")
    request = f"GET /hello HTTP/1.1\r\nHost: {server.host}\r\nX-Slow: " + "a" * 100
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        closed_after = None
        for ch in request:
            try:
                s.sendall(ch.encode())
                s.settimeout(1.0)
                if s.recv(4096) == b"":
                    closed_after = time.monotonic() - start
                    break
            except socket.timeout:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - start
                break
            if time.monotonic() - start > 4:  # well before the deadline
                assert http_get(f"{server.http}/hello") == (200, "hello\n")
            assert time.monotonic() - start < 20, "never cut"
    assert closed_after is not None and 9 <= closed_after <= 12.5, closed_after


def test_frames_pipelined_behind_the_upgrade_are_answered(start_server):
    """A client that writes its first frames in the same segment as the
    upgrade request: MHD hands those bytes over with the socket (extra_in
    of the upgrade callback) and the example must feed them to the
    connection, or the first messages are lost and the client waits."""
    server = start_server("mhd")
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(upgrade_request(server, "piped") +
                  masked_text(b'{"action":"ping"}') +
                  masked_text(b'{"action":"echo","data":"second"}'))
        got = b""
        s.settimeout(3.0)
        try:
            while b'"second"' not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass
    assert got.startswith(b"HTTP/1.1 101 "), got[:100]
    assert b'{"action":"pong","data":""}' in got, got
    assert b'{"action":"echo","data":"second"}' in got, got


def test_an_absolute_form_target_is_routed_on_its_path(start_server):
    """RFC 9112 3.2.2: a server must accept a request target in absolute
    form ("GET http://host/ws?..."), and libwsmux reads one as its path
    (ws_conn_upgrade_answer, as when fed). MHD hands the access handler the
    target whole, scheme and authority included, and the example routed on
    that: the upgrade was a 404 here and a 101 on every byte-fed adapter,
    and GET http://host/hello a 404 too."""
    server = start_server("mhd")
    req = upgrade_request(server, "abs").replace(
        b"GET /ws", f"GET http://{server.host}:{server.port}/ws".encode(), 1)
    status, head = raw_status_and_head(server, req.decode())
    assert status == 101, head
    status, head = raw_status_and_head(
        server, f"GET http://{server.host}:{server.port}/hello HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\nConnection: close\r\n\r\n")
    assert status == 200, head


def test_a_push_right_after_a_reply_is_not_held_by_nagle(start_server):
    """MHD turns TCP_NODELAY off on the socket it upgrades, and the example
    left it so (the adapters set it on every accepted socket): a small
    frame written while the previous one was not yet acknowledged waited
    for the client's delayed ACK. A client that pings and reads its pong,
    then gets a broadcast: the push took ~44 ms here, 0.1 ms on epoll."""
    server = start_server("mhd")
    a, b = raw_client(server, "na"), raw_client(server, "nb")
    took = []
    with a, b:
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(20):
            a.sendall(masked_text(b'{"action":"ping"}'))
            assert read_frame(a)[1] == b'{"action":"pong","data":""}'
            t0 = time.monotonic()
            b.sendall(masked_text(b'{"action":"broadcast","data":1}'))
            assert read_frame(a)[1] == b'{"action":"bc","data":1}'
            took.append(time.monotonic() - t0)
            read_frame(b)
    took.sort()
    assert took[len(took) // 2] < 0.025, f"median push {took[len(took) // 2] * 1e3:.1f} ms"
