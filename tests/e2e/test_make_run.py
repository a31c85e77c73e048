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


def test_make_run_serves_the_pingpong_server_and_its_page():
    port = free_port()
    build = os.path.relpath(BUILD, ROOT)
    proc = subprocess.Popen(
        ["make", "--no-print-directory", f"BUILD={build}", f"PORT={port}",
         "run"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        bufsize=1, start_new_session=True)
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()
    seen = []

    def wait_line(text):
        deadline = time.monotonic() + 60  # make may still build the example
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            assert line is not None, f"make run ended before {text!r}: {seen}"
            seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} from make run: {seen}")

    try:
        url = f"http://127.0.0.1:{port}/"
        assert url in wait_line("libwsmux ping/pong server:")
        wait_line(f"listening on {url}")
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
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
