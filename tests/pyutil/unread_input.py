"""A client failed mid-message while the server holds its input unread:
the server must close without a TCP reset, so the close frame it sent is
not thrown away (a reset discards the server's unsent output and, on some
client stacks, the client's unread input). Shared by the adapter and MHD
tests."""
import os
import signal
import socket
import time

from backpressure import kernel_queues
from wsmux_proc import TIMEOUT, read_frame

# The frame header claims 1 MiB (past every example's message limit: the
# server fails it with 1009 at the header); EXCESS bytes of its payload
# follow. More than any adapter reads at once (16 KiB, libuv 64 KiB), less
# than a loopback socket's receive queue holds unread (about 85 KB).
DECLARED = 1 << 20
EXCESS = 72 * 1024


def fail_with_input_unread(server, s):
    """On s, an upgraded client socket (plain or TLS): stops the server,
    sends the oversized frame's header and EXCESS payload bytes, waits
    until all of it sits in the server's receive queue, resumes the server
    and reads. Returns (close code, what came after the close frame: "eof"
    or the exception's name)."""
    head = bytes([0x81, 0x80 | 127]) + DECLARED.to_bytes(8, "big") + os.urandom(4)
    sent = len(head) + EXCESS
    server.signal(signal.SIGSTOP)
    try:
        s.sendall(head + b"x" * EXCESS)
        ports = (server.port, s.getsockname()[1])
        deadline = time.monotonic() + TIMEOUT
        last = -1
        # all of it: at least what was sent (TLS adds records' overhead),
        # and no longer growing
        while (rx := kernel_queues(*ports)[1]) < sent or rx != last:
            assert time.monotonic() < deadline, (
                f"the server's receive queue holds {rx} of the {sent} bytes sent")
            last = rx
            time.sleep(0.02)
    finally:
        server.signal(signal.SIGCONT)
    with s:
        op, payload = read_frame(s)
        assert op == 8, (op, payload[:40])
        code = int.from_bytes(payload[:2], "big")
        try:
            after = "eof" if s.recv(16) == b"" else "data"
            # TLS: that was close_notify; the TCP end must be a FIN too
            if after == "eof" and socket.socket.recv(s, 16) != b"":
                after = "data"
        except OSError as e:
            after = type(e).__name__
    return code, after
