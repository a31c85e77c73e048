"""One hostile client against the examples' own transport code: what it
does must stay its own problem, not the server's or the other clients'."""
import ctypes
import ctypes.util
import os
import socket
import struct
import time

import pytest

from backpressure import idle_cpu, kernel_queues
from conftest import (BUILD, ROOT, TIMEOUT, client_ctx, masked_text,
                      read_frame, recv_head, upgrade_request)


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class _OpenSSL:
    """The few libssl calls a client that sends TLS 1.3 KeyUpdates needs
    (Python's ssl module cannot send one)."""

    def __init__(self):
        name = ctypes.util.find_library("ssl")
        if name is None:
            pytest.skip("no libssl to load")
        lib = ctypes.CDLL(name)
        vp, i = ctypes.c_void_p, ctypes.c_int
        for fn, res, args in (
                ("TLS_client_method", vp, []),
                ("SSL_CTX_new", vp, [vp]),
                ("SSL_CTX_free", None, [vp]),
                ("SSL_new", vp, [vp]),
                ("SSL_free", None, [vp]),
                ("SSL_set_fd", i, [vp, i]),
                ("SSL_connect", i, [vp]),
                ("SSL_key_update", i, [vp, i]),
                ("SSL_do_handshake", i, [vp]),
                ("SSL_get_error", i, [vp, i]),
                ("SSL_write", i, [vp, ctypes.c_char_p, i]),
                ("SSL_read", i, [vp, ctypes.c_char_p, i]),
                ("SSL_CTX_ctrl", ctypes.c_long, [vp, i, ctypes.c_long, vp]),
                ("SSL_renegotiate", i, [vp])):
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        self.lib = lib


def _timeouts(sock, seconds):
    tv = struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _tls_upgrade(lib, ssl, sock, server, device_id):
    """TLS handshake on sock, then the WebSocket upgrade; returns a
    4 KiB buffer for the test's own reads."""
    assert lib.SSL_set_fd(ssl, sock.fileno()) == 1
    assert lib.SSL_connect(ssl) == 1, "TLS handshake failed"
    req = upgrade_request(server, device_id)
    assert lib.SSL_write(ssl, req, len(req)) == len(req)
    buf = ctypes.create_string_buffer(4096)
    n = lib.SSL_read(ssl, buf, len(buf))
    assert buf.raw[:max(n, 0)].startswith(b"HTTP/1.1 101 "), buf.raw[:n]
    return buf


SSL_KEY_UPDATE_REQUESTED = 1
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3
SSL_CTRL_SET_MAX_PROTO_VERSION = 124
TLS1_2_VERSION = 0x0303
SSL_ERROR_SYSCALL = 5
SSL_ERROR_ZERO_RETURN = 6
# ws_config_init's idle_timeout_ms, which examples/tls.c keeps.
IDLE_TIMEOUT_S = 60


def test_tls_key_updates_from_a_client_that_never_reads_are_bounded(
        start_server, cert):
    """TLS 1.3 lets a client ask for a KeyUpdate in return of its own
    (RFC 8446 4.6.3): OpenSSL writes that answer from SSL_read, into the
    memory BIO, where neither tls_send's ciphertext cap nor the library's
    max_queued sees it. A client that sends KeyUpdates and never reads
    grew the server's wbio by as much as it sent (about 0.7 MB/s, the
    server's CPU the limit), for as long as the connection lived. Now the
    server stops reading such a client once its answers are past the cap:
    the client's sends block and the server's memory stays put.

    Shown in two steps: KeyUpdates until the server's kernel send queue is
    full (its answers cannot leave: the client reads nothing), then more
    until the server has read up to 240,000 more (6.5 MB of answers), far
    more than the ciphertext cap (256 KiB). Before: all read, and the
    server's RSS grew by about that much. After: the client blocks long
    before.

    A client that sends no WebSocket frame is also ended at the server's
    read-idle deadline (60 s): on a machine slow enough for the test to
    outlive it (CI under load did), that end is the outcome, and only it
    may end the connection before the client blocks.

    Step 2 counts what the server read (our bytes that left our socket
    and are not in its receive queue), not what we sent: under load the
    server may not have run at all during step 1's last rounds (its queue
    "still" at 63 KB once), and the kernel then holds more than 6.5 MB of
    our KeyUpdates (our send buffer grows to tcp_wmem's 4 MiB, its receive
    buffer further): sent counted, the budget ran out with the server
    paused as it should be. ASan's quarantine (256 MB of freed blocks kept
    from reuse, filled by OpenSSL's frees at about 12 KiB per KeyUpdate)
    is turned off for this server: when step 1 ended before it was full,
    its filling was counted as the server's growth (+50 MB)."""
    # quarantine_size_mb=0: RSS then follows the live heap (the build
    # without ASan ignores the variable).
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": f"{asan}:quarantine_size_mb=0".lstrip(":")}
    server = start_server("tls", "--cert", cert[0], "--key", cert[1],
                          env=env)
    ossl = _OpenSSL()
    lib = ossl.lib
    ctx = lib.SSL_CTX_new(lib.TLS_client_method())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect((server.host, server.port))
    # libssl does the I/O on the descriptor: blocking (a Python timeout
    # would make it non-blocking), bounded by the kernel's own timeouts.
    sock.settimeout(None)
    _timeouts(sock, TIMEOUT)
    ssl = lib.SSL_new(ctx)
    try:
        _tls_upgrade(lib, ssl, sock, server, "keyupdates")
        # A blocked send now ends in a second (WANT_WRITE), not in TIMEOUT.
        _timeouts(sock, 1.0)
        client_port = sock.getsockname()[1]
        opened = time.monotonic()

        def key_update():
            """"sent"; "blocked" when the socket took nothing for a second
            (the server stopped reading); "ended" when the server closed
            the connection."""
            lib.SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED)
            rc = lib.SSL_do_handshake(ssl)
            if rc == 1:
                return "sent"
            err = lib.SSL_get_error(ssl, rc)
            if err in (SSL_ERROR_SYSCALL, SSL_ERROR_ZERO_RETURN):
                return "ended"
            assert err == SSL_ERROR_WANT_WRITE, f"KeyUpdate failed ({err})"
            return "blocked"

        # 1: until the server's send queue has not grown in 5000 updates
        # (a wall-clock bound too: an unlimited kernel would never stop).
        last, still, sent = -1, 0, 0
        end = time.monotonic() + 30
        outcome = "sent"
        while still < 3 and time.monotonic() < end:
            for _ in range(5000):
                outcome = key_update()
                if outcome != "sent":
                    break
                sent += 1
            if outcome != "sent":
                break
            q = kernel_queues(server.port, client_port)[0]
            still = still + 1 if q <= last else 0
            last = max(last, q)
        rss0 = _rss_kib(server.proc.pid)

        def read_by_server(n):
            """Of our first n KeyUpdates, how many the server has read:
            the rest is in our send queue or its receive queue. None once
            its socket is gone (our next send says "ended")."""
            ours = kernel_queues(client_port, server.port)[0]
            theirs = kernel_queues(server.port, client_port, gone=None)
            return None if theirs is None else n - (ours + theirs[1]) // 27

        # 2: past the cap. A KeyUpdate record is 27 bytes; so is its answer.
        # Until the server has read 240,000 more, or we block, or it ends.
        read0 = read_by_server(sent)
        extra, read = 0, 0
        while outcome == "sent" and read < 240000:
            outcome = key_update()
            if outcome != "sent":
                break
            extra += 1
            if extra % 1000 == 0:
                now_read = read_by_server(sent + extra)
                read = read if now_read is None else now_read - read0
        grew = _rss_kib(server.proc.pid) - rss0
        elapsed = time.monotonic() - opened
        print(f"tls: {sent} KeyUpdates to a full send queue ({last} B), "
              f"{extra} more ({read} read), {outcome} after "
              f"{elapsed:.1f} s, RSS +{grew} KiB")
        if outcome == "ended":
            assert elapsed >= IDLE_TIMEOUT_S - 1, (
                f"the server closed the connection after {elapsed:.1f} s, "
                f"before its read-idle deadline")
        assert outcome != "sent", (
            f"the server read {read} KeyUpdates past its full send queue "
            f"from a client that reads nothing; its RSS grew {grew} KiB "
            f"meanwhile")
        assert grew < 2048, f"the server's RSS grew {grew} KiB"
    finally:
        lib.SSL_free(ssl)
        lib.SSL_CTX_free(ctx)
        sock.close()


RENEGOTIATE_SHIM = os.path.join(ROOT, BUILD, "tests", "tls_renegotiate.so")


def test_a_write_waiting_for_a_renegotiation_waits_for_input(
        start_server, cert):
    """An SSL_write in the middle of a TLS 1.2 renegotiation answers
    SSL_ERROR_WANT_READ: it can go on only once the client's handshake
    records are read. tls_send answered 0 ("would block"), the library
    asked for write interest, and tls.c armed POLLOUT, which an idle
    socket always has: the loop ran the write again at once, forever, at
    100% CPU, for as long as a client that began a renegotiation chose
    not to finish it. The server is given OpenSSL 1.1.1's default, which
    allows client renegotiation (tests/integrations/tls_renegotiate.c;
    OpenSSL 3 refuses it unless told to allow it). Once the client
    finishes, the broadcast waiting for it arrives."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"LD_PRELOAD": RENEGOTIATE_SHIM,
           "ASAN_OPTIONS": f"{asan}:verify_asan_link_order=0".lstrip(":")}
    server = start_server("tls", "--cert", cert[0], "--key", cert[1], env=env)
    lib = _OpenSSL().lib
    ctx = lib.SSL_CTX_new(lib.TLS_client_method())
    lib.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, TLS1_2_VERSION, None)
    sock = socket.create_connection((server.host, server.port), TIMEOUT)
    sock.settimeout(None)  # libssl does the I/O: blocking, kernel-bounded
    _timeouts(sock, TIMEOUT)
    ssl = lib.SSL_new(ctx)
    other = None
    try:
        buf = _tls_upgrade(lib, ssl, sock, server, "reneg")
        # The ClientHello goes out; the rest of the handshake does not.
        sock.setblocking(False)
        assert lib.SSL_renegotiate(ssl) == 1
        rc = lib.SSL_do_handshake(ssl)
        assert lib.SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ, rc
        # Another client's broadcast: output for the stalled one.
        other = client_ctx(cert).wrap_socket(
            socket.create_connection((server.host, server.port), TIMEOUT),
            server_hostname="localhost")
        other.sendall(upgrade_request(server, "other"))
        assert recv_head(other).startswith(b"HTTP/1.1 101 ")
        other.sendall(masked_text(b'{"action":"broadcast","data":7}'))
        assert read_frame(other) == (1, b'{"action":"bc","data":7}')
        used = idle_cpu(server.proc.pid)
        assert used < 0.25, \
            f"tls used {used:.2f} s of CPU in 1 s on a stalled renegotiation"
        sock.setblocking(True)
        _timeouts(sock, TIMEOUT)
        assert lib.SSL_do_handshake(ssl) == 1, "renegotiation failed"
        n = lib.SSL_read(ssl, buf, len(buf))
        assert buf.raw[:max(n, 0)] == b'\x81\x18{"action":"bc","data":7}', \
            buf.raw[:max(n, 0)]
    finally:
        if other is not None:
            other.close()
        lib.SSL_free(ssl)
        lib.SSL_CTX_free(ctx)
        sock.close()
