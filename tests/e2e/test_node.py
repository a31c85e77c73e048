"""Second and third clients: npm `ws` (node/ws_client.js) and headless
Chromium on the served page (node/browser.js, playwright-core), both against
examples/pingpong. Node packages come from node/package-lock.json
(`npm ci`, run by scripts/deps.sh or the tier's node_modules rule)."""
import asyncio
import os
import shutil
import subprocess

import pytest

from conftest import (NODE_DIR, TIMEOUT, _die_with_parent, arun, connect,
                      recv_json)

NODE = shutil.which("node")


def _need(module):
    if NODE is None:
        pytest.fail("node is not installed (scripts/deps.sh test)")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", module)):
        pytest.fail(f"{module} missing: run `npm ci` in {NODE_DIR}")


@pytest.mark.parametrize("check", ["session", "echo", "broadcast", "replace"])
def test_npm_ws_client(pingpong, check):
    _need("ws")
    r = subprocess.run([NODE, "ws_client.js", check, pingpong.ws], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=30,
                       preexec_fn=_die_with_parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"ok {check}"


def test_chromium_page_ping_pong(pingpong):
    """The browser loads GET /, connects, sends ping from the page and sees
    the pong in #log; then broadcast both ways with a python client."""
    _need("playwright-core")
    if not os.access(os.environ.get("CHROMIUM", "/usr/bin/chromium"), os.X_OK):
        pytest.fail("chromium is not installed (scripts/deps.sh test)")

    async def go():
        async with connect(f"{pingpong.ws}/ws?device_id=pyPeer01") as peer:
            proc = await asyncio.create_subprocess_exec(
                NODE, "browser.js", f"{pingpong.http}/", "webPage01", cwd=NODE_DIR,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                preexec_fn=_die_with_parent)
            steps = []
            try:
                while True:
                    line = await asyncio.wait_for(proc.stdout.readline(), 45)
                    if not line:
                        break
                    line = line.decode().strip()
                    steps.append(line)
                    if line == "step broadcast":
                        # The page's broadcast reached this client too.
                        assert await recv_json(peer) == {"action": "bc",
                                                         "data": "hello, everyone"}
                    if line == "step waiting-for-peer":
                        await peer.send('{"action":"broadcast",'
                                        '"data":"from the python client"}')
                        assert await recv_json(peer) == {
                            "action": "bc", "data": "from the python client"}
                rc = await asyncio.wait_for(proc.wait(), TIMEOUT)
                err = (await proc.stderr.read()).decode()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert rc == 0, f"steps {steps}\n{err}"
            assert steps == ["step " + s for s in (
                "loaded", "connected", "pong", "echo", "broadcast", "error-reply",
                "waiting-for-peer", "peer", "disconnected", "done")], err
    arun(go(), timeout=60)
