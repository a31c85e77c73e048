"""Fixtures for the integrations tier.

The server processes, start_server and the websockets helpers are in
tests/pyutil/wsmux_proc.py (shared with tests/e2e). Every example here is
started on a free loopback port and must announce exactly that port; this
tier allows larger messages and longer test coroutines than the shared
defaults.
"""
import os
import ssl
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "pyutil"))
import wsmux_proc  # noqa: E402
from wsmux_proc import (BUILD, ROOT, TIMEOUT, Server, answered_during_drain,  # noqa: E402,F401
                        close_code, cpu_seconds,
                        example, free_port, recv_json, refused_status,
                        masked_frame, masked_text, raw_client, read_frame,
                        recv_head, recv_until_eof,
                        start_server, upgrade_request)


def arun(coro, timeout=TIMEOUT * 3):
    return wsmux_proc.arun(coro, timeout)


def connect(url, **kw):
    kw.setdefault("max_size", 2 ** 22)
    return wsmux_proc.connect(url, **kw)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A certificate for 127.0.0.1 and localhost (cert.pem, key.pem) for
    examples/tls, made for the test."""
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60)
    return str(crt), str(key)


def client_ctx(cert):
    """A client TLS context that trusts only cert."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert[0])
    ctx.check_hostname = True
    return ctx
