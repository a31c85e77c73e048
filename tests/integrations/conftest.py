"""Fixtures for the integrations tier.

The server processes, start_server and the websockets helpers are in
tests/pyutil/wsmux_proc.py (shared with tests/e2e). Every example here is
started on a free loopback port and must announce exactly that port; this
tier allows larger messages and longer test coroutines than the shared
defaults.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "pyutil"))
import wsmux_proc  # noqa: E402
from wsmux_proc import (BUILD, ROOT, TIMEOUT, Server, answered_during_drain,  # noqa: E402,F401
                        close_code, cpu_seconds,
                        example, free_port, recv_json, refused_status,
                        masked_frame, masked_text, raw_client, read_frame,
                        recv_until_eof,
                        start_server, upgrade_request)


def arun(coro, timeout=TIMEOUT * 3):
    return wsmux_proc.arun(coro, timeout)


def connect(url, **kw):
    kw.setdefault("max_size", 2 ** 22)
    return wsmux_proc.connect(url, **kw)
