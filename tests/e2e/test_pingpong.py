"""examples/pingpong (the Go model on libwsmux) against python3-websockets."""
import asyncio
import http.client
import json
import re
import signal
import socket

import pytest

from conftest import (TIMEOUT, arun, close_code, connect, recv_json, recv_text,
                      recv_until_eof, refused_status)


def test_ping_pong_session(pingpong):
    """The model's session: ping answered with exactly {"action":"pong","data":""}."""
    async def go():
        async with connect(f"{pingpong.ws}/ws?device_id=a1b2c3d4") as ws:
            for _ in range(3):
                await ws.send('{"action":"ping"}')
                assert await recv_text(ws) == '{"action":"pong","data":""}'
            await ws.send('{"action":"ping","data":null}')
            assert await recv_text(ws) == '{"action":"pong","data":""}'
    arun(go())


def test_echo_returns_same_text(pingpong):
    async def go():
        async with connect(f"{pingpong.ws}/ws?device_id=echo0001") as ws:
            for text in ['{"action":"echo","data":{"a":[1,2,"x"],"b":null}}',
                         '{"action":"echo","data":"h\\u00e9llo \u2603"}',
                         '{"action":"echo"}',
                         '{"action":"echo","data":"' + "x" * 30000 + '"}']:
                await ws.send(text)
                assert await recv_text(ws) == text
    arun(go())


def test_broadcast_reaches_everyone_including_sender(pingpong):
    async def go():
        clients = [await connect(f"{pingpong.ws}/ws?device_id=bc{i:06d}") for i in range(3)]
        try:
            # Round trips first: every client is registered before the broadcast.
            for ws in clients:
                await ws.send('{"action":"ping"}')
                assert await recv_json(ws) == {"action": "pong", "data": ""}
            await clients[1].send('{"action":"broadcast","data":{"n":1,"s":"hi"}}')
            for ws in clients:
                assert await recv_json(ws) == {"action": "bc", "data": {"n": 1, "s": "hi"}}
            await clients[0].send('{"action":"broadcast"}')
            for ws in clients:
                assert await recv_json(ws) == {"action": "bc"}
        finally:
            for ws in clients:
                await ws.close()
    arun(go())


def test_per_connection_order(pingpong):
    """Many messages in flight: each client sees its own in order."""
    async def go():
        async with connect(f"{pingpong.ws}/ws?device_id=order001") as ws:
            for i in range(200):
                await ws.send(json.dumps({"action": "echo", "data": i}))
            for i in range(200):
                assert (await recv_json(ws))["data"] == i
    arun(go())


def test_bad_messages_get_errors_and_stay_open(pingpong):
    async def go():
        async with connect(f"{pingpong.ws}/ws?device_id=badmsg01") as ws:
            cases = [("not json", "invalid_json"),
                     ('{"action":"ping"', "invalid_json"),
                     ("[1,2]", "not_object"),
                     ('"ping"', "not_object"),
                     ('{"data":1}', "bad_action"),
                     ('{"action":42}', "bad_action"),
                     ('{"action":"nope"}', "unknown_action"),
                     ('{"action":"PING"}', "unknown_action")]
            for text, code in cases:
                await ws.send(text)
                reply = await recv_json(ws)
                assert reply["action"] == "error", (text, reply)
                assert reply["data"]["code"] == code, (text, reply)
                assert isinstance(reply["data"]["message"], str)
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
    arun(go())


def test_binary_message_closes_1003(pingpong):
    async def go():
        async with connect(f"{pingpong.ws}/ws?device_id=binary01") as ws:
            await ws.send(b"\x00\x01")
            assert await close_code(ws) == 1003
    arun(go())


def test_duplicate_device_id_older_gets_4000(pingpong):
    async def go():
        url = f"{pingpong.ws}/ws?device_id=dup00001"
        old = await connect(url)
        await old.send('{"action":"ping"}')
        assert await recv_json(old) == {"action": "pong", "data": ""}
        new = await connect(url)
        try:
            assert await close_code(old) == 4000
            # The older one's close must not have removed the newer's entry:
            # it still gets pings answered and broadcasts delivered.
            await new.send('{"action":"ping"}')
            assert await recv_json(new) == {"action": "pong", "data": ""}
            async with connect(f"{pingpong.ws}/ws?device_id=dup00002") as other:
                await other.send('{"action":"broadcast","data":"x"}')
                assert await recv_json(other) == {"action": "bc", "data": "x"}
                assert await recv_json(new) == {"action": "bc", "data": "x"}
        finally:
            await new.close()
    arun(go())


def test_get_root_serves_the_page(pingpong):
    conn = http.client.HTTPConnection("127.0.0.1", pingpong.port, timeout=TIMEOUT)
    conn.request("GET", "/")
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 200
    assert r.getheader("Content-Type").startswith("text/html")
    for ident in ("device", "connect", "send", "input", "log", "status"):
        assert f'id="{ident}"' in body, ident
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", pingpong.port, timeout=TIMEOUT)
    conn.request("GET", "/nope")
    assert conn.getresponse().status == 404
    conn.close()


def test_head_and_other_methods_on_the_page(pingpong):
    """HEAD gets GET's head without the page (RFC 9110 9.3.2: the raw bytes
    end with the head); a method no resource here takes is 501."""
    with socket.create_connection(("127.0.0.1", pingpong.port),
                                  timeout=TIMEOUT) as s:
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw = recv_until_eof(s)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:200]
    assert int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1)) > 1000
    assert rest == b"", f"{len(rest)} bytes of content after a HEAD answer"
    for method in ("POST", "DELETE"):
        conn = http.client.HTTPConnection("127.0.0.1", pingpong.port,
                                          timeout=TIMEOUT)
        conn.request(method, "/")
        assert conn.getresponse().status == 501, method
        conn.close()


def test_page_request_with_unknown_content_length_is_400(pingpong):
    """RFC 9112 6.3 items 4 and 5: a request whose content length cannot
    be determined (a Content-Length that is no number, two that differ, a
    Transfer-Encoding not ending in chunked) is a 400, not the page (it was
    a 200 from on_http)."""
    def answer(head):
        with socket.create_connection(("127.0.0.1", pingpong.port),
                                      timeout=TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head +
                      b"\r\n")
            return recv_until_eof(s)
    for head in (b"Content-Length: abc\r\n",
                 b"Content-Length: 1\r\nContent-Length: 2\r\n",
                 b"Content-Length: 1, 2\r\n",
                 b"Transfer-Encoding: gzip\r\n"):
        raw = answer(head)
        assert raw.startswith(b"HTTP/1.1 400 "), (head, raw[:80])
        assert b"invalid " in raw, raw
    assert answer(b"Content-Length: 0\r\n").startswith(b"HTTP/1.1 200 ")


def test_refusals(pingpong):
    async def go():
        assert await refused_status(f"{pingpong.ws}/ws") == 400
        assert await refused_status(f"{pingpong.ws}/ws?device_id=") == 400
        assert await refused_status(f"{pingpong.ws}/ws?device_id=" + "x" * 200) == 400
        assert await refused_status(f"{pingpong.ws}/ws?device_id=org00001",
                                    origin="http://evil.example") == 403
        assert await refused_status(f"{pingpong.ws}/other?device_id=x") == 404
        # Same origin (what a browser on the page sends) is accepted.
        async with connect(f"{pingpong.ws}/ws?device_id=org00002",
                           origin=f"http://127.0.0.1:{pingpong.port}") as ws:
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
    arun(go())


def test_plain_get_on_ws_path_is_not_an_upgrade(pingpong):
    conn = http.client.HTTPConnection("127.0.0.1", pingpong.port, timeout=TIMEOUT)
    conn.request("GET", "/ws?device_id=x")
    r = conn.getresponse()
    r.read()
    assert r.status == 426  # on the WebSocket path: "use an upgrade"
    assert r.getheader("Upgrade") == "websocket"
    assert r.getheader("Sec-WebSocket-Version") == "13"
    conn.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_1001_and_exits_0(pingpong, sig):
    """Issue 3: the server exits cleanly on SIGTERM and on SIGINT (^C)."""
    async def go():
        clients = [await connect(f"{pingpong.ws}/ws?device_id=term{i:04d}") for i in range(3)]
        for ws in clients:
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
        pingpong.signal(sig)
        codes = await asyncio.gather(*(close_code(ws) for ws in clients))
        assert codes == [1001] * 3
    arun(go())
    assert pingpong.wait_exit() == 0
    pingpong.wait_line("stopped")
