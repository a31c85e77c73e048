"""examples/echo_poll (the spelled-out poll(2) host) against python3-websockets."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import time

import pytest
from backpressure import close_half_close_and_read, fill, idle_cpu, read_echoes
from conftest import (TIMEOUT, _die_with_parent, arun, close_code, connect,
                      example, recv_json, recv_text)
from flood import Flood
from wsmux_proc import masked_text, need_ipv6, raw_client


@pytest.fixture
def echo(start_server):
    return start_server("echo_poll")


def test_echoes_text_exactly(echo):
    async def go():
        async with connect(f"{echo.ws}/") as ws:
            for text in ['{"action":"ping"}',
                         '{"action":"anything","data":{"k":[1,2.5,true,null]}}',
                         '{ "action" : "spaced" , "data" : "\u00e9\u2603" }',
                         '{"action":"big","data":"' + "y" * 60000 + '"}']:
                await ws.send(text)
                assert await recv_text(ws) == text
    arun(go())


def test_echoes_binary(echo):
    async def go():
        async with connect(f"{echo.ws}/any/path?device_id=bin") as ws:
            payload = bytes(range(256)) * 10
            await ws.send(payload)
            assert await recv_text(ws) == payload
    arun(go())


def test_many_clients_interleaved_keep_order(echo):
    async def go():
        clients = [await connect(f"{echo.ws}/c{i}") for i in range(8)]
        try:
            for n in range(50):
                for i, ws in enumerate(clients):
                    await ws.send(json.dumps({"action": "m", "data": [i, n]}))
            for i, ws in enumerate(clients):
                for n in range(50):
                    assert (await recv_json(ws))["data"] == [i, n]
        finally:
            for ws in clients:
                await ws.close()
    arun(go())


def test_not_an_envelope_gets_error_reply(echo):
    """Text must be an {"action","data"} envelope: the library answers."""
    async def go():
        async with connect(f"{echo.ws}/") as ws:
            await ws.send("plain text")
            reply = await recv_json(ws)
            assert reply["action"] == "error"
            assert reply["data"]["code"] == "invalid_json"
            await ws.send('{"action":"still-open"}')
            assert await recv_text(ws) == '{"action":"still-open"}'
    arun(go())


def test_client_close_handshake(echo):
    async def go():
        ws = await connect(f"{echo.ws}/")
        await ws.close(1000, "bye")
        assert ws.close_code == 1000
    arun(go())


def test_port_zero_and_ipv6(start_server):
    need_ipv6()
    srv = start_server("echo_poll", host="::1", port=0)
    assert srv.port > 0

    async def go():
        async with connect(f"{srv.ws}/") as ws:
            await ws.send('{"action":"v6"}')
            assert await recv_text(ws) == '{"action":"v6"}'
    arun(go())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_1001_and_exits_0(echo, sig):
    async def go():
        clients = [await connect(f"{echo.ws}/") for _ in range(2)]
        for ws in clients:
            await ws.send('{"action":"hi"}')
            assert await recv_text(ws) == '{"action":"hi"}'
        echo.signal(sig)
        assert await asyncio.gather(*(close_code(ws) for ws in clients)) == [1001, 1001]
    arun(go())
    assert echo.wait_exit() == 0
    echo.wait_line("stopped")


def test_signal_under_load_stops_the_server(echo):
    """Clients that keep every wait of the loop busy: SIGTERM still ends it.
    The signal was let in only inside ppoll, where the kernel delivers it
    only when no fd is ready, so the server ran on for as long as the load
    did; it is now read from a signalfd polled with the sockets."""
    with Flood(echo.host, echo.port, "/flood-"):
        echo.signal(signal.SIGTERM)
        assert echo.wait_exit() == 0  # within TIMEOUT, the load still on
    echo.wait_line("stopped")


def test_signal_with_no_clients_exits_0(echo):
    echo.signal(signal.SIGTERM)
    assert echo.wait_exit() == 0


def test_usage_error():
    """An unknown option: the usage line on stderr and exit status 2 (a
    crash or a hang before "listening" is not a usage error)."""
    r = subprocess.run([example("echo_poll"), "--bogus"], capture_output=True,
                       text=True, timeout=TIMEOUT, preexec_fn=_die_with_parent)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("usage: "), r.stderr
    assert "listening" not in r.stdout, r.stdout


def test_a_peer_gone_without_a_close_frame_is_let_go(echo):
    """A client that sends its FIN (or dies) without a close frame: the
    read sees end of file and must end the connection. Taken for "nothing
    yet", the socket stays readable forever: the loop spins at 100% CPU and
    the descriptor is never closed (the client never sees the server's
    FIN)."""
    fd_dir = f"/proc/{echo.proc.pid}/fd"
    before = len(os.listdir(fd_dir))
    with raw_client(echo, "eof") as s:
        s.sendall(masked_text(b'{"action":"hi"}'))
        assert b'{"action":"hi"}' in s.recv(4096)
        s.shutdown(socket.SHUT_WR)  # FIN, no close frame
        s.settimeout(2.0)
        try:
            tail = s.recv(4096)
        except socket.timeout:
            tail = None
        assert tail == b"", f"the server kept the half-closed socket: {tail!r}"
    used = idle_cpu(echo.proc.pid)
    assert used < 0.25, f"echo_poll used {used:.2f} s of CPU in 1 s while idle"
    assert len(os.listdir(fd_dir)) <= before, os.listdir(fd_dir)


def test_a_reader_that_pauses_gets_every_byte_then_the_loop_idles(echo):
    """A client pipelines more echoes than the kernel's socket buffers hold
    and reads only after a pause: want_write(1) arms POLLOUT, the rest goes
    out in order, and want_write(0) must clear POLLOUT once the queue is
    empty, or every poll returns at once on the always-writable socket and
    the loop spins while idle (tests/pyutil/backpressure.py)."""
    with raw_client(echo, "pauser", rcvbuf=4096) as s:
        sent = fill(s, echo.port)
        time.sleep(0.5)
        got, end = read_echoes(s, sent)
        assert (got, end) == (list(range(sent)), None), \
            f"{len(got)} of {sent} echoes, then {end}"
        used = idle_cpu(echo.proc.pid)  # still connected, nothing to write
    assert used < 0.25, f"echo_poll used {used:.2f} s of CPU in 1 s while idle"


def test_a_client_that_half_closes_after_its_close_frame_gets_everything(echo):
    """As for the adapters (tests/integrations/test_backpressure.py): the
    server holds output, the client sends its close frame and half-closes
    before reading. read_client stops reading once the close handshake is
    done, so the EOF does not abort the connection and drop the rest."""
    with raw_client(echo, "half", rcvbuf=4096) as s:
        sent = fill(s, echo.port)
        got, end, took = close_half_close_and_read(
            s, sent, lambda s: s.shutdown(socket.SHUT_WR))
        assert (got, end) == (list(range(sent)), 1000), \
            f"{len(got)} of {sent} echoes, then {end} ({took:.1f} s)"
        assert s.recv(1) == b""
