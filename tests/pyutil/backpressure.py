"""A client that makes a server hold its output: it pipelines echoes until
the server's kernel send queue stops growing (its socket buffer is full and
the client's window shut), then a few more that only the library can hold,
and reads everything only then. Shared by the adapter and echo_poll tests
of the would-block, want_write and writable paths."""
import json
import time

from wsmux_proc import cpu_seconds, masked_frame, masked_text, read_frame

PAD = "x" * 60000


def kernel_queues(server_port, client_port, gone=(0, 0)):
    """The server socket's (send queue, receive queue) in bytes, from
    /proc/net/tcp's tx_queue:rx_queue; gone when it is gone."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == server_port and
                    int(remote.split(":")[1], 16) == client_port):
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    return gone


def kernel_send_queue(server_port, client_port):
    """Bytes in the server's socket send queue."""
    return kernel_queues(server_port, client_port)[0]


def fill(s, server_port, extra=6):
    """Sends 60 KB echoes [k, PAD] until the server's kernel send queue has
    not grown for three sends, then extra more (6: 360 KB, under the 1 MiB
    max_queued). Returns how many were sent."""
    client_port = s.getsockname()[1]
    sent, last, still, stop = 0, -1, 0, None
    while stop is None or sent < stop:
        s.sendall(masked_text(json.dumps(
            {"action": "echo", "data": [sent, PAD]}).encode()))
        sent += 1
        assert sent < 400, "the kernel send queue never filled"
        if stop is None:
            time.sleep(0.03)
            q = kernel_send_queue(server_port, client_port)
            still = still + 1 if q <= last else 0
            last = max(last, q)
            if still >= 3:
                stop = sent + extra
    return sent


def read_echoes(s, sent):
    """Reads server frames until sent echoes came or something else did.
    Returns (the k of each echo in order, what ended it: None, a close
    code, or the exception)."""
    got = []
    try:
        while len(got) < sent:
            op, data = read_frame(s)
            if op == 8:
                return got, int.from_bytes(data[:2], "big")
            got.append(json.loads(data)["data"][0])
    except (EOFError, OSError) as e:
        return got, repr(e)
    return got, None


def close_half_close_and_read(s, sent, shutdown):
    """After fill(): sends the client's close frame (1000), half-closes
    with shutdown(s) (a FIN; for TLS, without close_notify), waits for the
    server to read the EOF with echoes queued, then reads. Returns
    read_echoes' (got, end) for sent + 1 (the close frame ends it) and the
    seconds the read took (the server's close timeout is 5 s)."""
    s.sendall(masked_frame(0x8, b"\x03\xe8"))
    shutdown(s)
    time.sleep(0.5)
    t0 = time.monotonic()
    got, end = read_echoes(s, sent + 1)
    return got, end, time.monotonic() - t0


def idle_cpu(pid, settle=0.3, span=1.0):
    """CPU seconds the process used in span seconds, after settle."""
    time.sleep(settle)
    cpu0 = cpu_seconds(pid)
    time.sleep(span)
    return cpu_seconds(pid) - cpu0
