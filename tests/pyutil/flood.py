"""Load that keeps a server's loop busy: a few client processes, each with
a few raw WebSocket connections that write a pipelined message (a ping by
default) as fast as the server takes it and read whatever comes back. While it runs, every wait
of the server's loop finds a socket ready, which is what a host's signal
handling has to cope with (see test_adapters.py and test_echo_poll.py).

    with Flood(host, port, "/ws?device_id=f"):
        ... the server is busy here ...

Each process stops when its connections are closed (a 1001 at shutdown),
at stop(), or after `seconds` (a bound, so nothing outlives a failed test).
"""
import multiprocessing
import os
import socket
import time

from wsmux_proc import masked_text, raw_upgrade

PING = b'{"action":"ping"}'


def _upgrade(host, port, path):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(raw_upgrade(f"{host}:{port}", path))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    s.setblocking(False)
    return s


def _run(ready, host, port, path, conns, seconds, message):
    socks = [_upgrade(host, port, f"{path}{i}-{os.getpid()}") for i in range(conns)]
    ready.put(os.getpid())
    burst = masked_text(message) * 200
    pending = {s: b"" for s in socks}
    end = time.monotonic() + seconds
    while socks and time.monotonic() < end:
        for s in list(socks):
            try:
                if len(pending[s]) < 1 << 16:
                    pending[s] += burst
                pending[s] = pending[s][s.send(pending[s]):]
            except BlockingIOError:
                pass
            except OSError:
                socks.remove(s)
                continue
            try:
                if not s.recv(1 << 16):
                    socks.remove(s)
            except BlockingIOError:
                pass
            except OSError:
                socks.remove(s)
    for s in socks:
        s.close()


class Flood:
    def __init__(self, host, port, path, procs=3, conns=4, seconds=30,
                 message=PING):
        self.ready = multiprocessing.Queue()
        args = (self.ready, host, port, path, conns, seconds, message)
        self.procs = [multiprocessing.Process(target=_run, args=args, daemon=True)
                      for _ in range(procs)]

    def __enter__(self):
        for p in self.procs:
            p.start()
        for _ in self.procs:  # every process connected (and then writing)
            self.ready.get(timeout=10)
        return self

    def stop(self):
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join(5)

    def __exit__(self, *exc):
        self.stop()
