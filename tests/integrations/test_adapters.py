"""One script for every loop adapter: the same ping/pong server built on
poll (examples/pingpong.c), epoll, libuv and libevent must behave the
same, so the adapters cannot drift apart."""
import asyncio
import json
import signal

import pytest

from conftest import TIMEOUT, arun, close_code, connect, recv_json, refused_status

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
