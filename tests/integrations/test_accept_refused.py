"""accept4 failing for want of kernel memory (ENOBUFS) while a client is
pending: the connection stays in the backlog and the listener stays
readable, so a loop that takes the failure for "backlog empty" wakes at once,
forever, one core at 100% for as long as the kernel refuses. Every example
that accepts on its own loop pauses its listener instead, then serves the
client once accept works. (libuv accepts inside libuv; test_adapter_nomem.c
covers the adapters' code directly.)

accept4 is replaced in the whole server process by an LD_PRELOAD shim
(tests/integrations/accept_refuse.c) that refuses while a flag file exists
and counts the refusals in its size.
"""
import os
import socket
import time

import pytest

from conftest import (BUILD, ROOT, TIMEOUT, client_ctx, recv_head,
                      upgrade_request)

SHIM = os.path.join(ROOT, BUILD, "tests", "accept_refuse.so")
SERVERS = ["pingpong", "pingpong_epoll", "pingpong_libevent", "echo_poll",
           "tls"]


@pytest.mark.parametrize("name", SERVERS)
def test_accept_out_of_memory_pauses_instead_of_spinning(start_server, cert,
                                                          tmp_path, name):
    flag = tmp_path / "refuse"
    flag.touch()
    # The shim comes before an ASan build's runtime in the library list,
    # which ASan checks by default; the shim allocates nothing.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"LD_PRELOAD": SHIM, "WSMUX_REFUSE_ACCEPT": str(flag),
           "ASAN_OPTIONS": f"{asan}:verify_asan_link_order=0".lstrip(":")}
    args = ("--cert", cert[0], "--key", cert[1]) if name == "tls" else ()
    server = start_server(name, *args, env=env)
    pending = socket.create_connection((server.host, server.port),
                                       timeout=TIMEOUT)
    try:
        # Counted in accept attempts, not CPU time: a spinning loop on a
        # busy machine gets little CPU but still makes thousands of them
        # a second; one paused 100 ms at a time makes about ten.
        time.sleep(0.3)
        tried = flag.stat().st_size
        time.sleep(1.0)
        tried = flag.stat().st_size - tried
        assert tried < 50, f"{name} tried accept {tried} times in 1 s"
        flag.unlink()
        sock = pending
        if name == "tls":
            sock = client_ctx(cert).wrap_socket(pending,
                                                server_hostname="127.0.0.1")
        sock.sendall(upgrade_request(server, "late"))
        head = recv_head(sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
    finally:
        pending.close()
