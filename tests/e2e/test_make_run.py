"""`make run`, the README's first command: it prints the URL, serves the
ping/pong server and its page on PORT, and a ^C (SIGINT to the terminal's
process group: make and the server) closes the clients with 1001 and stops
the server cleanly. Under `make asan` the make variables of the tier
(BUILD, SAN, OPT) reach this make through MAKEFLAGS, so it runs the
example the tier built and rebuilds nothing."""
import http.client
import os
import queue
import signal
import subprocess
import threading
import time

from conftest import (BUILD, ROOT, TIMEOUT, arun, close_code, connect,
                      free_port, recv_json)


class MakeRun:
    """`make run PORT=port`, its output lines collected by a thread."""

    def __init__(self, port):
        build = os.path.relpath(BUILD, ROOT)
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", f"BUILD={build}",
             f"PORT={port}", "run"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, text):
        deadline = time.monotonic() + 60  # make may still build the example
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            assert line is not None, \
                f"make run ended before {text!r}: {self.seen}"
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} from make run: {self.seen}")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def start():
    """make run on a free port. One taken between free_port and the
    server's bind (any outgoing connection's ephemeral port) ends make run
    with the server's "address already in use": tried again on another
    port, up to 5 times; any other failure fails the test."""
    for attempt in range(5):
        port = free_port()
        run = MakeRun(port)
        url = f"http://127.0.0.1:{port}/"
        try:
            assert url in run.wait_line("libwsmux ping/pong server:")
            run.wait_line(f"listening on {url}")
            return run, port
        except AssertionError:
            run.kill()
            taken = any("address already in use" in line.lower()
                        for line in run.seen)
            if not taken or attempt == 4:
                raise


def test_make_run_serves_the_pingpong_server_and_its_page():
    run, port = start()
    proc, wait_line = run.proc, run.wait_line
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request("GET", "/")
        r = conn.getresponse()
        body = r.read().decode()
        conn.close()
        assert r.status == 200
        assert 'id="connect"' in body

        async def go():
            ws = await connect(f"ws://127.0.0.1:{port}/ws?device_id=makerun1")
            await ws.send('{"action":"ping"}')
            assert await recv_json(ws) == {"action": "pong", "data": ""}
            os.killpg(proc.pid, signal.SIGINT)  # ^C in the terminal
            assert await close_code(ws) == 1001
        arun(go())
        wait_line("pingpong: stopped")
        proc.wait(timeout=TIMEOUT)
    finally:
        run.kill()
