#!/usr/bin/python3
"""Cross-check server for the loadgen: the ping/pong protocol on Debian's
python3-websockets (run with /usr/bin/python3). Correctness only, not speed.
usage: py_server.py --port N
"""
import argparse
import asyncio
import json

import websockets

PONG = '{"action":"pong","data":""}'
CLIENTS = set()


async def handler(ws, path=None):
    CLIENTS.add(ws)
    try:
        async for msg in ws:
            if not isinstance(msg, str):
                continue
            try:
                obj = json.loads(msg)
            except ValueError:
                continue
            action = obj.get("action") if isinstance(obj, dict) else None
            if action == "ping":
                await ws.send(PONG)
            elif action == "broadcast":
                out = '{"action":"bc","data":%s}' % json.dumps(
                    obj.get("data"), separators=(",", ":"))
                websockets.broadcast(CLIENTS, out)
    except websockets.ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(ws)


async def main(port):
    async with websockets.serve(handler, "127.0.0.1", port, max_size=1 << 24,
                                ping_interval=None, backlog=1024):
        await asyncio.Future()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(main(ap.parse_args().port))
