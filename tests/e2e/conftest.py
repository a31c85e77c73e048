"""Shared fixtures for libwsmux's end-to-end tier.

The server processes, start_server and the websockets helpers are in
tests/pyutil/wsmux_proc.py (shared with tests/integrations); this file adds
what only this tier uses. Nothing sleeps for synchronisation: we wait for
the server's "listening" line, for command answers on its stdout, or for
messages on sockets, each with a bounded timeout.
"""
import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "pyutil"))
from wsmux_proc import (BUILD, ROOT, TIMEOUT, Server, _die_with_parent,  # noqa: E402,F401
                        arun, close_code, connect, example, free_port,
                        recv_json, recv_until_eof, refused_status,
                        start_server)

NODE_DIR = os.path.join(ROOT, "tests", "e2e", "node")


@pytest.fixture
def pingpong(start_server):
    return start_server("pingpong")


async def recv_text(ws, timeout=TIMEOUT):
    return await asyncio.wait_for(ws.recv(), timeout)


async def no_message(ws, within=0.3):
    """Asserts nothing arrives on ws for `within` seconds (a negative check;
    prefer an ordering check: send a ping and expect the pong first)."""
    try:
        msg = await asyncio.wait_for(ws.recv(), within)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected message {msg!r}")
