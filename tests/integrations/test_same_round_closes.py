"""Connections closed in the middle of a loop round, through every loop
adapter. A socket can be closed by the handling of another one (a
broadcast whose send to it fails) or by its own write handling, while
its events of the same round are still to be handled: the adapter must
neither touch the freed socket nor skip or repeat another one. A
use-after-free here may go unnoticed in the plain build; the ASan tier
(`make asan`) reports it, and the fixture fails the test on that report.
The server is stopped (SIGSTOP) while the peers act, so that everything
lands in one poll/epoll round when it resumes."""
import json
import signal
import socket
import struct
import time

import pytest
from conftest import TIMEOUT, masked_text, raw_client

ADAPTERS = ["pingpong", "pingpong_epoll", "pingpong_libuv", "pingpong_libevent"]


def _reset(s):
    """Closes with an RST (SO_LINGER 0): the server's next send fails."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _still_serves(server):
    with raw_client(server, "after") as s:
        s.sendall(masked_text(b'{"action":"ping"}'))
        assert b"pong" in s.recv(4096)


@pytest.mark.parametrize("name", ADAPTERS)
def test_a_broadcast_that_fails_on_peers_reset_in_the_same_round(start_server, name):
    """Five peers, then a sixth (the last in poll.h's table, the first
    event of epoll's ready list) that broadcasts; the five reset before the
    server sees the broadcast. Handling it closes the five (send fails)
    while their own events of that round are pending: poll.h's table
    shrinks by more than one under its walk, epoll.h's batch still points
    at their structs."""
    server = start_server(name)
    for rnd in range(3):
        peers = [raw_client(server, f"p{rnd}_{i}") for i in range(5)]
        sender = raw_client(server, f"s{rnd}")
        time.sleep(0.1)
        server.signal(signal.SIGSTOP)
        try:
            sender.sendall(masked_text(json.dumps(
                {"action": "broadcast", "data": rnd}).encode()))
            time.sleep(0.05)
            for p in peers:
                _reset(p)
            time.sleep(0.05)
        finally:
            server.signal(signal.SIGCONT)
        sender.settimeout(TIMEOUT)
        assert b'"bc"' in sender.recv(4096)
        sender.close()
    _still_serves(server)


@pytest.mark.parametrize("name", ADAPTERS)
def test_a_peer_reset_with_output_queued(start_server, name):
    """A peer that does not read gets a backlog the kernel cannot hold
    (write readiness armed), then resets: the round reports it writable
    and readable at once, the write closes it, and the read of that round
    must not happen."""
    server = start_server(name)
    pad = "x" * 60000
    for rnd in range(2):
        s = raw_client(server, f"q{rnd}", rcvbuf=4096)
        for i in range(70):  # 4.2 MB: past loopback's socket buffers
            s.sendall(masked_text(json.dumps(
                {"action": "echo", "data": [i, pad]}).encode()))
        time.sleep(0.3)
        _reset(s)
        time.sleep(0.2)
    _still_serves(server)
