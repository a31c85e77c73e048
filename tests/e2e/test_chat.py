"""examples/chat (epoll adapter): users from tokens, rooms, pushes from stdin
(to a user, a device list, a room, everyone), the timer, shutdown."""
import asyncio
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
import types

import pytest

from conftest import (TIMEOUT, _die_with_parent, arun, close_code, connect,
                      example, no_message, recv_json,
                      refused_status)
from flood import Flood
from wsmux_proc import cpu_seconds


@pytest.fixture
def chat(start_server):
    return start_server("chat", "--tick-ms", "0", stdin=True)


async def join_as(srv, device, token):
    """Connects and waits for the welcome: the user is bound from then on."""
    ws = await connect(f"{srv.ws}/ws?device_id={device}&token={token}")
    welcome = await recv_json(ws)
    assert welcome["action"] == "welcome", welcome
    return ws, welcome["data"]


async def pong(ws):
    """A round trip: everything sent to ws before now has arrived."""
    await ws.send('{"action":"ping"}')
    assert await recv_json(ws) == {"action": "pong", "data": ""}


def test_token_binds_user(chat):
    async def go():
        ws, data = await join_as(chat, "dev-a1", "alice-token")
        assert data == {"user": "alice", "device": "dev-a1"}
        await ws.close()
        chat.wait_line(r"^close alice dev-a1 1000")
    arun(go())
    assert "open alice dev-a1" in chat.seen


def test_missing_or_unknown_token_refused(chat):
    async def go():
        assert await refused_status(f"{chat.ws}/ws?device_id=d1") == 401
        assert await refused_status(f"{chat.ws}/ws?device_id=d1&token=") == 401
        assert await refused_status(f"{chat.ws}/ws?device_id=d1&token=mallory") == 403
        assert await refused_status(f"{chat.ws}/ws?token=alice-token") == 400
    arun(go())


def test_push_user_reaches_all_their_devices(chat):
    async def go():
        a1, _ = await join_as(chat, "a-phone", "alice-token")
        a2, _ = await join_as(chat, "a-laptop", "alice-token")
        b1, _ = await join_as(chat, "b-phone", "bob-token")
        assert chat.command("push alice hello alice") == "ok push 2"
        for ws in (a1, a2):
            assert await recv_json(ws) == {"action": "push", "data": "hello alice"}
        # bob got nothing: his next message is the pong.
        await pong(b1)
        assert chat.command("push carol nobody home") == "ok push 0"
        # One of alice's devices leaves: the other still gets pushes.
        await a1.close()
        chat.wait_line(r"^close alice a-phone")
        assert chat.command("push alice again") == "ok push 1"
        assert await recv_json(a2) == {"action": "push", "data": "again"}
        for ws in (a2, b1):
            await ws.close()
    arun(go())


def test_push_to_device_list(chat):
    async def go():
        socks = {}
        for dev, tok in (("d1", "alice-token"), ("d2", "bob-token"), ("d3", "carol-token")):
            socks[dev], _ = await join_as(chat, dev, tok)
        assert chat.command("devices d1,d3,ghost to some") == "ok devices 2"
        for dev in ("d1", "d3"):
            assert await recv_json(socks[dev]) == {"action": "push", "data": "to some"}
        await pong(socks["d2"])
        assert chat.command("send d2 just you") == "ok send 1"
        assert await recv_json(socks["d2"]) == {"action": "push", "data": "just you"}
        assert chat.command("all everyone") == "ok all 3"
        for ws in socks.values():
            assert await recv_json(ws) == {"action": "push", "data": "everyone"}
        assert chat.command("stats").startswith("ok stats open=3 ")
        assert chat.command("frobnicate x").startswith("error unknown command")
        for ws in socks.values():
            await ws.close()
    arun(go())


def test_rooms_join_say_leave(chat):
    async def go():
        a, _ = await join_as(chat, "ra", "alice-token")
        b, _ = await join_as(chat, "rb", "bob-token")
        c, _ = await join_as(chat, "rc", "carol-token")
        for ws in (a, b):
            await ws.send('{"action":"join","data":"lobby"}')
            assert await recv_json(ws) == {"action": "joined", "data": "lobby"}
        await a.send('{"action":"say","data":{"room":"lobby","text":"hi all"}}')
        said = {"action": "said", "data": {"room": "lobby", "from": "alice", "text": "hi all"}}
        assert await recv_json(a) == said
        assert await recv_json(b) == said
        await pong(c)  # carol is not in the room
        assert chat.command("publish lobby from the server") == "ok publish 2"
        for ws in (a, b):
            assert await recv_json(ws) == {"action": "push", "data": "from the server"}

        await b.send('{"action":"leave","data":"lobby"}')
        assert await recv_json(b) == {"action": "left", "data": "lobby"}
        await a.send('{"action":"say","data":{"room":"lobby","text":"alone"}}')
        assert (await recv_json(a))["data"]["text"] == "alone"
        await pong(b)

        # Mistakes: an error each, the connection stays open.
        for text, code in [('{"action":"join","data":"lobby"}', "already_joined"),
                           ('{"action":"say","data":{"room":"attic","text":"x"}}', "not_member"),
                           ('{"action":"leave","data":"attic"}', "not_member"),
                           ('{"action":"join","data":42}', "bad_request"),
                           ('{"action":"join","data":""}', "bad_request"),
                           ('{"action":"say","data":"lobby"}', "bad_request"),
                           ('{"action":"shout"}', "unknown_action")]:
            await a.send(text)
            reply = await recv_json(a)
            assert reply["action"] == "error" and reply["data"]["code"] == code, (text, reply)
        await pong(a)
        for ws in (a, b, c):
            await ws.close()
    arun(go())


def test_closing_leaves_rooms(chat):
    async def go():
        a, _ = await join_as(chat, "la", "alice-token")
        b, _ = await join_as(chat, "lb", "bob-token")
        for ws in (a, b):
            await ws.send('{"action":"join","data":"r"}')
            await recv_json(ws)
        await b.close()
        chat.wait_line(r"^close bob lb")
        assert chat.command("publish r x") == "ok publish 1"
        await a.close()
    arun(go())


def test_timer_ticks_everyone(start_server):
    srv = start_server("chat", "--tick-ms", "150", stdin=True)

    async def go():
        a, _ = await join_as(srv, "t1", "alice-token")
        b, _ = await join_as(srv, "t2", "bob-token")
        seen = []
        for ws in (a, b):
            for _ in range(2):
                msg = await recv_json(ws, timeout=5)
                assert msg["action"] == "tick", msg
                seen.append(msg["data"]["n"])
        assert seen[1] == seen[0] + 1 and seen[3] == seen[2] + 1
        await a.close()
        await b.close()
    arun(go())


def test_sigint_closes_1001_and_exits_0(chat):
    async def go():
        a, _ = await join_as(chat, "s1", "alice-token")
        b, _ = await join_as(chat, "s2", "bob-token")
        chat.signal(signal.SIGINT)
        assert await asyncio.gather(close_code(a), close_code(b)) == [1001, 1001]
    arun(go())
    assert chat.wait_exit() == 0
    chat.wait_line("stopped")


def test_clients_that_never_answer_hold_the_exit_only_for_the_drain(chat):
    """Busy clients that never answer the 1001 are closed when the 2 s
    drain ends, in whichever tick comes first; under load that is often
    the tick at the top of a loop iteration, which then waited with no
    deadline left (the tick answers -1) and no cap: chat never exited."""
    with Flood(chat.host, chat.port, "/ws?token=alice-token&device_id=flood-"):
        start = time.monotonic()
        chat.signal(signal.SIGTERM)
        assert chat.wait_exit(timeout=6) == 0
        assert time.monotonic() - start >= 1.5, "exited before the drain ended"


def test_stdin_eof_keeps_serving(chat):
    chat.proc.stdin.close()

    async def go():
        a, _ = await join_as(chat, "eof1", "alice-token")
        await pong(a)
        await no_message(a, 0.1)
        await a.close()
    arun(go())
    chat.signal(signal.SIGTERM)
    assert chat.wait_exit() == 0


def test_stdin_eof_leaves_the_loop_idle(chat):
    """stdin at end of file stays readable forever: its watcher must be
    removed, or the level-triggered epoll loop wakes on it at once, every
    time, and spins at 100% CPU while it still serves."""
    chat.proc.stdin.close()

    async def go():
        a, _ = await join_as(chat, "eofidle", "alice-token")
        await pong(a)  # the loop has run since the EOF
        await asyncio.sleep(0.3)
        cpu0 = cpu_seconds(chat.proc.pid)
        await asyncio.sleep(1.0)
        used = cpu_seconds(chat.proc.pid) - cpu0
        await pong(a)
        await a.close()
        return used
    used = arun(go())
    assert used < 0.25, f"chat used {used:.2f} s of CPU in 1 s after stdin EOF"


def test_post_from_another_thread_wakes_the_loop(chat):
    """`later` pushes from a worker thread through ws_post; the adapter's
    eventfd must wake the loop, which otherwise sleeps until the next
    library deadline (the 30 s ping interval, far past this test's 10 s)."""
    async def go():
        a1, _ = await join_as(chat, "w1", "alice-token")
        a2, _ = await join_as(chat, "w2", "alice-token")
        await pong(a1)  # the loop is idle from here on
        # The second command must reach chat while the first job still
        # waits out its delay: 2 s, not 300 ms, so that a loaded machine
        # (the test and chat descheduled between the two commands) cannot
        # let the first job finish first; still far below the 30 s the
        # loop would sleep without the wake.
        assert chat.command("later 2000 alice from a thread") == "ok later queued"
        assert chat.command("later 10 alice too soon") == "error later busy"
        for ws in (a1, a2):
            assert await recv_json(ws, timeout=8) == {"action": "push",
                                                      "data": "from a thread"}
        assert chat.command("later 0 alice \"quoted\" \\ text") == "ok later queued"
        for ws in (a1, a2):
            assert await recv_json(ws, timeout=8) == {"action": "push",
                                                      "data": '"quoted" \\ text'}
        await a1.close()
        await a2.close()
    arun(go())


def test_sigterm_does_not_wait_for_a_pending_later(chat):
    """A `later` job still waiting out its delay (10 minutes here) is
    cancelled at shutdown: the worker waits on a condition variable that
    the shutdown signals, so SIGTERM ends the process at once instead of
    after the delay (a service manager would SIGKILL it first). wait_exit
    allows 10 s."""
    assert chat.command("later 600000 alice never") == "ok later queued"
    chat.signal(signal.SIGTERM)
    assert chat.wait_exit() == 0
    chat.wait_line("stopped")


def test_a_device_id_stays_with_its_user(chat):
    """Device ids are global and a newer connection replaces an older one:
    another user's token must not take over alice's device (and with it
    the pushes meant for it). Her own reconnect still replaces it."""
    async def go():
        a1, _ = await join_as(chat, "phone", "alice-token")
        assert await refused_status(
            f"{chat.ws}/ws?device_id=phone&token=bob-token") == 409
        await pong(a1)  # still open
        a2, _ = await join_as(chat, "phone", "alice-token")
        assert await close_code(a1) == 4000
        await a2.close()
    arun(go())


def test_client_text_cannot_forge_answer_lines(chat):
    """The device id and close reason are the client's text, printed on the
    stdout that carries the command answers: a newline in them must not
    start a line of its own. The library refuses a device id with a control
    byte (400); the example still escapes the close reason."""
    async def go():
        assert await refused_status(
            f"{chat.ws}/ws?device_id=x%0Aok%20push%20alice%2042"
            "&token=alice-token") == 400
        ws, _ = await join_as(chat, "x", "alice-token")
        await ws.close(code=1000, reason="bye\nok stats open=999999")
        chat.wait_line(r"^close alice x 1000 bye\?ok stats")
    arun(go())
    assert not any(line.startswith("ok push alice 42") for line in chat.seen)
    assert not any(line.startswith("ok stats open=999999")
                   for line in chat.seen)


def test_later_refuses_a_delay_out_of_range(chat):
    """atoi wrapped a huge delay into days, blocking `later` until then."""
    for bad in ("later 99999999999 alice x", "later 3600001 alice x",
                "later -1 alice x", "later 12abc alice x"):
        assert chat.command(bad).startswith("error later usage"), bad
    assert chat.command("later 3600000 alice x") == "ok later queued"


def test_a_line_longer_than_the_buffer_is_refused_whole(chat):
    """A command line past 4095 bytes was cut and the cut line run: a
    shorter push than typed went out ("ok push 1"), or a cut inside a
    UTF-8 character came back as "invalid JSON". It is refused whole now,
    and the next line is read from its own start."""
    async def go():
        a1, _ = await join_as(chat, "long-a1", "alice-token")
        assert chat.command("push alice " + "A" * 10000).startswith(
            "error line too long")
        assert chat.command("push alice x" + "\u00e9" * 3000).startswith(
            "error line too long")
        assert chat.command("push alice short") == "ok push 1"
        assert await recv_json(a1) == {"action": "push", "data": "short"}
        await a1.close()
    arun(go())


def test_a_closing_device_id_stays_with_its_user(chat):
    """A phone that stopped reading is closed as a slow consumer; its close
    frame cannot reach it either, so the connection stays closing until
    the close timeout. The ownership check used ws_server_find_device,
    which forgets a closing connection: in that window bob's token took
    alice's device id, got the pushes meant for it, and locked alice out
    (review 5). chat keeps its own device -> user table now."""
    alice = socket.socket()
    alice.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    alice.settimeout(TIMEOUT)
    try:
        alice.connect((chat.host, chat.port))
        alice.sendall((f"GET /ws?device_id=phone&token=alice-token HTTP/1.1\r\n"
                       f"Host: {chat.host}:{chat.port}\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        chat.wait_line(r"^open alice phone")
        text = "x" * 4000
        chat.proc.stdin.write(f"send phone {text}\n" * 1500)  # 6 MB she never reads
        chat.proc.stdin.flush()
        deadline = time.monotonic() + 2 * TIMEOUT
        while not any("slow consumer" in line for line in chat.stderr):
            assert time.monotonic() < deadline, chat.stderr[-5:]
            time.sleep(0.05)

        async def probe():
            return [await refused_status(
                f"{chat.ws}/ws?device_id=phone&token=bob-token")
                for _ in range(5)]
        assert arun(probe()) == [409] * 5
        chat.wait_line(r"^close alice phone 4001")
    finally:
        alice.close()


@pytest.mark.parametrize("kind", ["pipe", "pty"])
def test_unread_stdout_does_not_stop_the_loop(kind):
    """stdout is a pipe, or a terminal, that nobody reads while clients come
    and go: their open and close lines fill it, and the loop must go on
    serving. A printf there blocked the whole server in write(2) after
    about 230 connections with long device ids (review 8), and a terminal
    still did after a poll(POLLOUT), which a terminal answers with room
    for a few bytes. Lines are now dropped when stdout cannot take them,
    and the count is reported once it can."""
    if kind == "pipe":
        reader, child_out = os.pipe()
    else:
        reader, child_out = pty.openpty()  # the master is not read: a stalled terminal
    # --port 0: chat binds a port the kernel picks and names it in its
    # "listening" line. A port from free_port() could be taken by another
    # test's connection before chat binds it (pytest-xdist runs tests in
    # parallel), and nothing here would retry as start_server does.
    proc = subprocess.Popen(
        [example("chat"), "--port", "0", "--tick-ms", "0"],
        stdin=subprocess.PIPE, stdout=child_out, stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent)
    os.close(child_out)

    def read_some(timeout):
        ready, _, _ = select.select([reader], [], [], timeout)
        return os.read(reader, 65536).replace(b"\r", b"") if ready else b""
    try:
        first = b""
        while not re.search(rb"listening on ws://127\.0\.0\.1:(\d+)/", first):
            more = read_some(TIMEOUT)
            assert more, first
            first += more
        port = int(re.search(rb"listening on ws://127\.0\.0\.1:(\d+)/",
                             first).group(1))
        srv = types.SimpleNamespace(ws=f"ws://127.0.0.1:{port}")

        async def churn_then_ping():
            bob, _ = await join_as(srv, "bob-phone", "bob-token")
            for i in range(400):  # about 110 KB of lines, none read
                ws, _ = await join_as(srv, f"{i:04d}" + "d" * 116, "alice-token")
                await ws.close()
            await asyncio.wait_for(pong(bob), 2)
            await bob.close()
        arun(churn_then_ping())

        while read_some(0.2):  # what the pipe or terminal holds; room again
            pass

        async def one_more():
            ws, _ = await join_as(srv, "last", "alice-token")
            await ws.close()
        arun(one_more())
        out, deadline = b"", time.monotonic() + TIMEOUT
        while b"open alice last\n" not in out:
            assert time.monotonic() < deadline, out[-300:]
            out += read_some(0.1)
        dropped = re.search(rb"dropped (\d+) lines\n(.*\n)*open alice last\n", out)
        assert dropped and int(dropped.group(1)) > 0, out[-300:]
        proc.send_signal(signal.SIGTERM)
        rest, deadline = b"", time.monotonic() + TIMEOUT
        while b"chat: stopped" not in rest:
            assert time.monotonic() < deadline, rest[-300:]
            rest += read_some(0.1)
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(reader)
