"""examples/tls: OpenSSL in the host, plaintext to libwsmux; a real wss://
client trusting a certificate generated for the test."""
import asyncio
import json
import signal
import socket
import ssl
import struct
import time

import pytest

from backpressure import (close_half_close_and_read, fill, idle_cpu,
                          kernel_send_queue, read_echoes)
from conftest import (TIMEOUT, arun, client_ctx, close_code, connect,
                      masked_frame, masked_text, raw_client, recv_head,
                      recv_json, refused_status, upgrade_request)
from unread_input import fail_with_input_unread


@pytest.fixture
def server(start_server, cert):
    return start_server("tls", "--cert", cert[0], "--key", cert[1])


def test_wss_ping_echo_broadcast(server, cert):
    ctx = client_ctx(cert)

    async def run():
        a = await connect(f"{server.ws}/ws?device_id=a", ssl=ctx)
        b = await connect(f"{server.ws}/ws?device_id=b", ssl=ctx)
        await a.send('{"action":"ping"}')
        assert await recv_json(a) == {"action": "pong", "data": ""}
        big = json.dumps({"action": "echo", "data": "y" * 60000})
        for _ in range(40):  # ~2.4 MB: more than the socket buffers hold
            await a.send(big)
        for _ in range(40):
            assert await asyncio.wait_for(a.recv(), TIMEOUT) == big
        await b.send('{"action":"broadcast","data":[1,2]}')
        for ws in (a, b):
            assert await recv_json(ws) == {"action": "bc", "data": [1, 2]}
        await a.close()
        await b.close()
    arun(run())


def test_wss_refusal_and_bad_client(server, cert):
    ctx = client_ctx(cert)

    async def run():
        assert await refused_status(f"{server.ws}/ws", ssl=ctx) == 400
        # a plaintext client on the TLS port: the server drops it (an alert
        # and the close, not a wait for the open timeout), goes on
        try:
            async with connect(f"ws://{server.host}:{server.port}/ws?device_id=p",
                               open_timeout=5):
                raise AssertionError("plaintext upgrade accepted")
        except asyncio.TimeoutError:
            raise AssertionError("plaintext client left hanging, not dropped")
        except (OSError, __import__("websockets").exceptions.WebSocketException):
            pass
        async with connect(f"{server.ws}/ws?device_id=ok", ssl=ctx) as ws:
            await ws.send('{"action":"ping"}')
            assert (await recv_json(ws))["action"] == "pong"
    arun(run())


def test_a_bad_client_leaves_the_others_alive(server, cert):
    """A client speaking plain HTTP to the TLS port fails its handshake, and
    OpenSSL records why in the thread's error queue. Left there, it made
    SSL_get_error answer SSL_ERROR_SSL for the next healthy connection's
    "no more data yet": every client that read next was aborted (1006)."""
    ctx = client_ctx(cert)

    async def run():
        clients = [await connect(f"{server.ws}/ws?device_id=h{i}", ssl=ctx)
                   for i in range(5)]
        for ws in clients:
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
        with socket.create_connection((server.host, server.port), TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(TIMEOUT)
            while s.recv(4096):  # an alert, then the server's close
                pass
        for _ in range(3):  # each read after the first one too
            for ws in clients:
                await ws.send('{"action":"ping"}')
                assert await recv_json(ws) == {"action": "pong", "data": ""}
            await asyncio.sleep(0.1)
        for ws in clients:
            await ws.close()
    arun(run())


def test_wss_sigterm_1001(server, cert):
    ctx = client_ctx(cert)

    async def run():
        ws = await connect(f"{server.ws}/ws?device_id=s", ssl=ctx)
        await ws.send('{"action":"ping"}')
        await recv_json(ws)
        server.proc.send_signal(signal.SIGTERM)
        assert await close_code(ws) == 1001
    arun(run())
    assert server.proc.wait(timeout=TIMEOUT) == 0


def test_a_half_closing_client_gets_its_whole_reply(server, cert):
    """A client that sends an echo larger than one TLS record and its close,
    then half-closes (FIN): the reply and the close frame must already be
    on the way. The send callback made one 16 KiB record per call, so the
    library waited for POLLOUT with the rest, and the abort that follows the
    EOF dropped it (32 KiB of 60 KiB arrived, no close frame)."""
    payload = json.dumps({"action": "echo", "data": "q" * 60000}).encode()
    raw = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    with client_ctx(cert).wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(upgrade_request(server, "half") + masked_text(payload)
                  + masked_frame(0x8, b"\x03\xe8"))
        # TCP FIN, no TLS close_notify (SSLSocket.shutdown would drop TLS)
        socket.socket.shutdown(s, socket.SHUT_WR)
        got = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
    head, _, frames = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert frames[:2] == b"\x81\x7e", frames[:2]
    n = struct.unpack(">H", frames[2:4])[0]
    assert frames[4:4 + n] == payload, f"{len(frames) - 4} of {n} bytes"
    assert frames[4 + n:] == b"\x88\x02\x03\xe8", frames[4 + n:]


def test_a_failed_client_gets_its_close_frame_without_a_reset(server, cert):
    """As for the loop adapters (test_adapters.py): the TLS host drops the
    socket's unread input before it closes, so the close frame and the
    close_notify arrive, then the FIN, not a reset."""
    raw = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    s = client_ctx(cert).wrap_socket(raw, server_hostname="localhost")
    s.sendall(upgrade_request(server, "big"))
    head = recv_head(s)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert fail_with_input_unread(server, s) == (1009, "eof")


def test_the_server_ends_tls_with_close_notify(server, cert):
    """After the WebSocket close handshake the server closes the TLS session
    with close_notify before the TCP FIN (RFC 8446 6.1): without it a client
    that refuses ragged EOFs cannot tell the end from a truncation attack
    (Python's ssl raises SSLEOFError)."""
    ctx = client_ctx(cert)
    # OpenSSL 3 reports an EOF without close_notify only if not told to
    # ignore it (Python sets OP_IGNORE_UNEXPECTED_EOF by default).
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    raw = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    with ctx.wrap_socket(raw, server_hostname="localhost",
                         suppress_ragged_eofs=False) as s:
        s.sendall(upgrade_request(server, "notify"))
        head = recv_head(s)
        assert head.startswith(b"HTTP/1.1 101 "), head
        s.sendall(masked_frame(0x8, b"\x03\xe8"))
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break  # close_notify: a clean end of the TLS stream
                got += chunk
        except ssl.SSLError as e:  # SSLEOFError, or UNEXPECTED_EOF_WHILE_READING
            raise AssertionError(f"TCP FIN without close_notify after {got!r}") from e
    assert got == b"\x88\x02\x03\xe8", got


def slow_reader(server, cert, device):
    """A wss:// client with a 4 KiB receive buffer (the server's socket
    fills early), upgraded as device."""
    return raw_client(server, device, rcvbuf=4096, wrap=lambda raw: client_ctx(
        cert).wrap_socket(raw, server_hostname="localhost"))


def _settled_send_queue(server_port, client_port):
    last, same = None, 0
    end = time.monotonic() + TIMEOUT
    while same < 3 and time.monotonic() < end:
        time.sleep(0.02)
        q = kernel_send_queue(server_port, client_port)
        same = same + 1 if q == last else 0
        last = q
    return last


def test_ciphertext_the_socket_did_not_take_outlives_the_close(server, cert):
    """A client that does not read while its echoes fill the server's
    socket, then sends its close: the library hands over the last echo and
    the close reply (the send callback took them: the ciphertext waits in
    the memory BIO for the socket) and, the close handshake being done,
    closes. tls_close freed the SSL object with that ciphertext still in
    it: the client read a truncated echo and no close frame. The socket
    must stay until its ciphertext is out (bounded, as the libuv adapter's
    pending writes are)."""
    payload = json.dumps({"action": "echo", "data": "w" * 60000}).encode()
    frame = masked_text(payload)
    with slow_reader(server, cert, "linger") as s:
        client_port = s.getsockname()[1]
        # Echoes until the server's socket is full: the last one's
        # ciphertext did not fit whole, the rest waits in the server.
        sent, prev = 0, _settled_send_queue(server.port, client_port)
        while True:
            s.sendall(frame)
            sent += 1
            q = _settled_send_queue(server.port, client_port)
            if sent > 1 and q - prev < len(payload):
                break
            prev = q
            assert sent < 400, "the server's socket never filled"
        s.sendall(masked_frame(0x8, b"\x03\xe8"))
        time.sleep(0.5)  # the close handshake is done on the server's side
        got = b""
        try:
            while True:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                got += chunk
        except (ssl.SSLError, ConnectionResetError):
            pass
    want = (b"\x81\x7e" + struct.pack(">H", len(payload)) + payload) * sent
    assert got[:len(want)] == want, f"{len(got)} of {len(want)} echo bytes"
    assert got[len(want):] == b"\x88\x02\x03\xe8", got[len(want):][:16]


def test_a_wss_client_that_half_closes_after_its_close_frame_gets_everything(
        server, cert):
    """As for the adapters (test_backpressure.py), with more queued than
    the ciphertext cap: a client holds the server's output, sends its close
    frame and half-closes (TCP FIN) before reading. The EOF aborted the
    connection (1006) and dropped what the library held; after the peer's
    close frame it only ends reading: every echo, then the close frame."""
    with slow_reader(server, cert, "half") as s:
        sent = fill(s, server.port, extra=10)
        got, end, took = close_half_close_and_read(  # FIN, no close_notify
            s, sent, lambda s: socket.socket.shutdown(s, socket.SHUT_WR))
        assert (got, end) == (list(range(sent)), 1000), \
            f"{len(got)} of {sent} echoes, then {end} ({took:.1f} s)"


def test_a_wss_reader_that_pauses_gets_every_byte_then_the_loop_idles(server, cert):
    """The TLS host's own backpressure: a client pipelines echoes until the
    server's socket is full, then 10 more (600 KB): more ciphertext than the
    example keeps per socket (WSA_TLS_MAX_PENDING, 256 KiB), so its send
    callback must answer "would block", want_write must arm POLLOUT and the
    writable path must hand the rest over, in order, once the client reads.
    Then the loop idles: write interest dropped with the queue empty. (The
    other TLS tests never fill that cap: want_write never ran.)"""
    with slow_reader(server, cert, "pauser") as s:
        sent = fill(s, server.port, extra=10)
        time.sleep(0.5)
        got, end = read_echoes(s, sent)
        assert (got, end) == (list(range(sent)), None), \
            f"{len(got)} of {sent} echoes, then {end}"
        used = idle_cpu(server.proc.pid)
    assert used < 0.25, f"tls used {used:.2f} s of CPU in 1 s while idle"
