#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/.

The seeds are committed; rerun this after changing an input layout
(see the comment at the top of each fuzz_<target>.c):
    python3 tests/fuzz/mkcorpus.py
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

VALID = (b"GET /ws?device_id=a HTTP/1.1\r\n"
         b"Host: example.com\r\n"
         b"Upgrade: websocket\r\n"
         b"Connection: Upgrade\r\n"
         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         b"Sec-WebSocket-Version: 13\r\n"
         b"\r\n")


def frame(opcode, payload=b"", fin=True, mask=b"\x37\xfa\x21\x3d", rsv=0):
    """A masked client frame."""
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(c ^ mask[i & 3] for i, c in enumerate(payload))
    return head + mask + body


def text(s):
    return frame(1, s.encode() if isinstance(s, str) else s)


def close(code=None, reason=b""):
    if code is None:
        return frame(8)
    return frame(8, code.to_bytes(2, "big") + reason)


def feed(data):
    """fuzz_conn ops feeding data in chunks of at most 128 bytes."""
    out = b""
    while data:
        chunk, data = data[:128], data[128:]
        out += bytes([len(chunk) - 1]) + chunk
    return out


def conn(flags, ops, fail_at=0):
    return bytes([flags, fail_at]) + ops


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def conn_seeds():
    V, SENDV, DROP, BADCLOSE, PEER, FAIL, NOHTTP = 1, 2, 4, 8, 16, 32, 64
    msgs = {
        "echo": '{"action":"echo","data":{"a":[1,2.5e3,true,null,"x"]}}',
        "raw": '{"action":"raw","data":"\\u00e9"}',
        "bcast": '{"action":"bcast","data":{"to":"all"}}',
        "close": '{"action":"close"}',
        "fail": '{"action":"fail","data":1}',
        "abort": '{"action":"abort"}',
        "join": '{"action":"join"}',
        "leave": '{"action":"leave"}',
        "free": '{"action":"free"}',
        "unknown": '{"action":"nope","data":[]}',
        "invalid-json": '{"action":',
        "not-object": '[1,2,3]',
        "bad-action": '{"action":5}',
        "escaped-key": '{"\\u0061ction":"echo","data":{"k":"v"}}',
    }
    for name, m in msgs.items():
        write("conn", "msg-" + name, conn(V | PEER, feed(text(m))))
    write("conn", "sendv-echo-partial",
          conn(V | SENDV, bytes([0xA5]) + feed(text(msgs["echo"]) * 3) +
               bytes([0xA0, 0xC0])))
    write("conn", "binary-echo", conn(V, feed(frame(2, bytes(range(200))))))
    write("conn", "ping-pong", conn(V, feed(frame(9, b"hi") + frame(10, b"x"))))
    write("conn", "close-code-reason",
          conn(V, feed(close(1000, "bye".encode()))))
    write("conn", "close-empty", conn(V, feed(close())))
    write("conn", "close-bad-code", conn(V, feed(close(1005))))
    frag = (frame(1, b'{"action":', fin=False) + frame(9, b"p") +
            frame(0, b'"echo","da', fin=False) + frame(0, b'ta":7}'))
    write("conn", "fragmented-text-ping-between", conn(V, feed(frag)))
    write("conn", "fragmented-binary",
          conn(V, feed(frame(2, b"ab", fin=False) + frame(0, b"cd"))))
    write("conn", "too-big", conn(V, feed(frame(1, b"x" * 5000)[:300])))
    write("conn", "invalid-utf8", conn(V, feed(text(b'{"action":"\xc3\x28"}'))))
    write("conn", "rsv-bit", conn(V, feed(frame(1, b"{}", rsv=4))))
    write("conn", "unmasked",
          conn(V, feed(bytes([0x81, 0x02]) + b"{}")))
    write("conn", "blocked-then-timeouts",
          conn(V | PEER, bytes([0xA2, 0xB2]) + feed(text(msgs["bcast"]) * 4) +
               bytes([0xDF] * 30)))
    write("conn", "drop-policy-flood",
          conn(V | PEER | DROP, bytes([0xB2]) +
               feed(text('{"action":"bcast","data":"' + "y" * 3000 + '"}') * 2)))
    write("conn", "idle-ping", conn(V, bytes([0xDA] * 4 + [0xDF] * 4)))
    write("conn", "handshake-dribble",
          conn(0, b"".join(bytes([0x00, c]) for c in VALID) +
               feed(text(msgs["echo"]))))
    write("conn", "plain-http-root",
          conn(0, feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
    write("conn", "plain-http-404",
          conn(NOHTTP, feed(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")))
    write("conn", "bad-request",
          conn(0, feed(b"GET /ws HTTP/1.1\r\nHost : x\r\n\r\n")))
    write("conn", "host-actions",
          conn(V | PEER, bytes([0xE2, 0xE4, 0xE8, 0xE9, 0xE5, 0xE7, 0xEA,
                                0xD3, 0xEB, 0xE6, 0xE3, 0xDF, 0xDF])))
    write("conn", "host-close-then-peer-close",
          conn(V, bytes([0xE0]) + feed(close(1000))))
    write("conn", "failmalloc-echo",
          conn(V | FAIL, feed(text(msgs["echo"])), fail_at=3))
    write("conn", "send-fails", conn(V, bytes([0xA3]) + feed(text(msgs["echo"]))))
    write("conn", "pipelined-request-and-frame",
          conn(0, bytes([0xFF]) + VALID + text(msgs["echo"])))
    # on_upgrade / on_http add each "X-Add: name:value" as a response line.
    added = (b"X-Add: Set-Cookie:a=b\r\nX-Add: content-length:1\r\n"
             b"X-Add: Bad Name:x\r\n\r\n")
    write("conn", "added-lines-101",
          conn(0, feed(VALID.replace(b"device_id=a", b"device_id=a&user=u")
                       [:-2] + added)))
    write("conn", "added-lines-http",
          conn(0, feed(b"GET / HTTP/1.1\r\nHost: x\r\n" + added)))
    SAMEUSER = 128
    write("conn", "same-user-duplicate",
          conn(V | PEER | SAMEUSER,
               feed(VALID.replace(b"device_id=a", b"device_id=b&user=u"))))


def envelope_seeds():
    BIN, NOH, BADCLOSE, FRAME = 1, 2, 4, 8
    seeds = {
        "echo-object": (FRAME, '{"action":"echo","data":{"a":[1,-2.5E+3,true,false,null]}}'),
        "data-string-escapes": (0, '{"action":"x","data":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"}'),
        "no-data": (0, '{"action":"ping"}'),
        "data-first": (0, ' { "data" : [ ] , "action" : "a" } '),
        "dup-keys": (0, '{"action":"a","action":"b","data":1,"data":2}'),
        "escaped-action": (0, '{"action":"\\u0061b","data":{}}'),
        "escaped-key": (0, '{"\\u0061ction":"ab","d\\u0061ta":[1]}'),
        "action-not-string": (0, '{"action":["x"]}'),
        "action-missing": (0, '{"data":1}'),
        "not-object": (0, '"just a string"'),
        "number": (0, '-0.5e-7'),
        "invalid": (0, '{"action":"x",}'),
        "trailing": (0, '{"action":"x"} x'),
        "deep": (0, '{"action":"d","data":' + "[" * 130 + "]" * 130 + '}'),
        "long-action": (NOH, '{"action":"' + "a" + "é" * 130 + '"}'),
        "unknown-no-handler": (NOH, '{"action":"zz"}'),
        "badclose-invalid": (BADCLOSE, '{'),
        "badclose-not-object": (BADCLOSE, '[]'),
        "binary": (BIN | FRAME, "\x00\x01\x02binary"),
        "binary-no-handler": (BIN | NOH, "bin"),
        "utf8-multibyte": (FRAME, '{"action":"ü","data":"日本語 \U0001F600"}'),
        "lone-surrogate": (0, '{"action":"s","data":"\\ud800"}'),
        "long-number": (0, '{"action":"n","data":' + "1" * 70 + '}'),
    }
    for name, (flags, m) in seeds.items():
        b = m.encode() if isinstance(m, str) else m
        write("envelope", name, bytes([flags, len(b) // 2]) + b)
    write("envelope", "utf8-invalid",
          bytes([0, 3]) + b'{"action":"\xed\xa0\x80"}')
    write("envelope", "utf8-truncated", bytes([0, 1]) + b'"\xf0\x9f\x98')


def handshake_seeds():
    reqs = {
        "valid": VALID,
        "valid-origin": VALID[:-2] + b"Origin: http://example.com\r\n\r\n",
        "bare-lf": VALID.replace(b"\r\n", b"\n"),
        "lowercase-spacing": (b"GET /ws HTTP/1.1\r\nhost:x\r\n"
                              b"UPGRADE: \t websocket \t\r\n"
                              b"connection: keep-alive, Upgrade\r\n"
                              b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              b"SEC-WEBSOCKET-VERSION: 13\r\n\r\n"),
        "query-decoding": (b"GET /w%73?device_id=a+b%20c&x&=y&&k=%41 HTTP/1.1\r\n"
                           b"Host: h\r\n\r\n"),
        "bad-escape": b"GET /ws?x=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
        "http10": b"GET /ws HTTP/1.0\r\nHost: h\r\n\r\n",
        "post": b"POST /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
        "version-8": VALID.replace(b"Version: 13", b"Version: 8"),
        "bad-key": VALID.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short=="),
        "dup-host": VALID[:-2] + b"Host: other\r\n\r\n",
        "obs-fold": b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        "space-before-colon": b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        "pipelined": VALID + b"\x81\x80\x00\x00\x00\x00",
        "incomplete": VALID[:40],
        "many-headers": b"GET / HTTP/1.1\r\n" + b"".join(
            b"X-%d: v\r\n" % i for i in range(70)) + b"\r\n",
        "origin-mismatch": VALID[:-2] + b"Origin: https://evil.example:443\r\n\r\n",
    }
    for i, (name, r) in enumerate(sorted(reqs.items())):
        sel = (i * 37) & 0xFF | 0x3F  # max_headers 64 mostly
        write("handshake", name, bytes([sel & 0x7F, 0x80]) + r)
    write("handshake", "few-headers-failmalloc", bytes([0x83, 0x40]) + VALID)
    write("handshake", "absolute-form", bytes([0x3F, 0x80]) + VALID.replace(
        b"GET /ws", b"GET http://127.0.0.1:8081/ws", 1))


def upgrade_seeds():
    ANSWER, KEEP, ANYPATH, NODEV, SPLIT, BADARG, NULLS, FAIL = (
        1, 2, 4, 8, 16, 32, 64, 128)
    LIST, OFFER, FIRST, FIRST_TRIM, CONST, SNULL, LAST_TRIM = range(1, 8)
    JOIN, U403, U299, U451, U503 = (x << 3 for x in range(1, 6))
    NOHTTP, ABORT_OPEN = 64, 128

    def field(b):
        return b.replace(b"\xfd", b"\xfd\xfd").replace(b"\xfe", b"\xfd\xfe")

    def up(flags, sp, lim, at, method, path, query, headers, fail_at=0):
        out = bytes([flags, sp, lim, at, fail_at])
        parts = [method, path, query]
        for name, value in headers:
            parts += [name, value]
        return out + b"\xfe".join(field(x) for x in parts)

    H = [(b"Host", b"example.com"), (b"Upgrade", b"websocket"),
         (b"Connection", b"Upgrade"),
         (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
         (b"Sec-WebSocket-Version", b"13")]
    Q = b"?device_id=a"
    L = 0x3F  # max_headers 64, max_handshake 8192
    proto = [(b"Sec-WebSocket-Protocol", b"chat, superchat")]
    seeds = {
        "valid": up(0, 0, L, 0x80, b"GET", b"/ws", Q, H),
        "valid-answer": up(ANSWER, 0, L, 0x80, b"GET", b"/ws", Q, H),
        "spaces-around-values": up(
            KEEP, 0, L, 0x40, b"GET", b"/ws", Q,
            [(n, b" \t" + v + b"  ") for n, v in H]),
        "subprotocol-list": up(SPLIT, LIST, L, 0x30, b"GET", b"/ws", Q,
                               H + proto),
        "subprotocol-offer-itself": up(0, OFFER, L, 0, b"GET", b"/ws", Q,
                                       H + proto),
        "subprotocol-offer-one": up(ANSWER, OFFER, L, 0, b"GET", b"/ws", Q,
                                    H + [(b"Sec-WebSocket-Protocol", b"chat")]),
        "subprotocol-first-untrimmed": up(
            0, FIRST, L, 0, b"GET", b"/ws", Q,
            H + [(b"Sec-WebSocket-Protocol", b"a ,b")]),
        "subprotocol-first-trimmed-two-lines": up(
            KEEP, FIRST_TRIM, L, 0, b"GET", b"/ws", Q,
            H + [(b"Sec-WebSocket-Protocol", b"x"),
                 (b"sec-websocket-protocol", b" y ")]),
        "subprotocol-const-not-offered": up(0, CONST, L, 0, b"GET", b"/ws", Q,
                                            H + [(b"Sec-WebSocket-Protocol",
                                                  b"v2.json")]),
        "subprotocol-last": up(ANSWER, LAST_TRIM | U403, L, 0, b"GET", b"/ws",
                               Q, H + proto),
        "subprotocol-crlf": up(0, OFFER, L, 0, b"GET", b"/ws", Q,
                               H + [(b"Sec-WebSocket-Protocol",
                                     b"chat\r\nX-Injected: 1")]),
        "subprotocol-null": up(ANSWER, SNULL, L, 0, b"GET", b"/ws", Q,
                               H + proto),
        "name-not-token": up(0, 0, L, 0, b"GET", b"/ws", Q,
                             H + [(b"Bad Name", b"v")]),
        "value-nul": up(ANSWER, 0, L, 0, b"GET", b"/ws", Q,
                        H + [(b"X-A", b"a\x00b")]),
        "value-del-obs-text": up(0, 0, L, 0, b"GET", b"/ws", Q,
                                 H + [(b"X-A", b"\x80\xff\t"),
                                      (b"X-B", b"\x7f")]),
        "empty-name-nulls": up(NULLS, 0, L, 0, b"GET", b"/ws", Q,
                               H + [(b"", b"")]),
        "too-many-headers": up(0, 0, 3, 0, b"GET", b"/ws", Q, H),
        "head-too-large": up(ANSWER, 0, 0x40 | 0x3F, 0, b"GET", b"/ws", Q, H),
        "head-exactly-max": up(SPLIT, 0, 0x7F, 0x70, b"GET", b"/ws", b"?d",
                               [(b"Host", b"h" * 38)]),
        "not-upgrade-root": up(0, 0, L, 0, b"GET", b"/", b"",
                               [(b"Host", b"x")]),
        "not-upgrade-root-answer": up(ANSWER, 0, L, 0, b"GET", b"/", b"",
                                      [(b"Host", b"x")]),
        "not-found": up(NOHTTP, 0, L, 0, b"GET", b"/other", b"", H),
        "any-path-no-device": up(ANYPATH | NODEV | KEEP, JOIN, L, 0, b"GET",
                                 b"/x/y", b"", H),
        "absolute-path": up(0, 0, L, 0, b"GET", b"http://h/ws", Q, H),
        "empty-query": up(NODEV, 0, L, 0, b"GET", b"/ws", b"?", H),
        "bad-escape": up(ANSWER, 0, L, 0, b"GET", b"/ws", b"?device_id=%zz", H),
        "post": up(0, 0, L, 0, b"POST", b"/ws", Q, H),
        "method-crlf": up(0, 0, L, 0, b"GET\r\n", b"/ws", Q, H),
        "version-8": up(0, 0, L, 0, b"GET", b"/ws", Q,
                        H[:4] + [(b"Sec-WebSocket-Version", b" 8")]),
        "origin": up(0, 0, L, 0, b"GET", b"/ws", Q,
                     H + [(b"Origin", b"http://example.com")]),
        "origin-mismatch": up(ANSWER, 0, L, 0, b"GET", b"/ws", Q,
                              H + [(b"Origin", b"https://evil")]),
        "on-upgrade-299": up(0, U299, L, 0, b"GET", b"/ws", Q, H),
        "on-upgrade-451-reason-from-req": up(0, U451, L, 0, b"GET", b"/ws", Q,
                                             H),
        "on-upgrade-503-answer": up(ANSWER, U503, L, 0, b"GET", b"/ws", Q, H),
        "on-open-aborts": up(0, ABORT_OPEN, L, 0, b"GET", b"/ws", Q, H),
        "on-open-aborts-answer": up(ANSWER, ABORT_OPEN, L, 0, b"GET", b"/ws",
                                    Q, H),
        "bad-args": up(BADARG, 0, L, 3, b"GET", b"/ws", Q, H),
        "bad-args-answer": up(ANSWER | BADARG, 0, L, 4, b"GET", b"/ws", Q, H),
        "failmalloc": up(FAIL, LIST, L, 0, b"GET", b"/ws", Q, H + proto,
                         fail_at=2),
        "failmalloc-answer": up(ANSWER | FAIL | KEEP, 0, L, 0, b"GET", b"/ws",
                                Q, H, fail_at=1),
        "no-headers-nulls": up(NULLS | ANSWER, 0, L, 0, b"GET", b"/ws", Q, []),
    }
    for name, data in seeds.items():
        write("upgrade", name, data)


def api_seeds():
    """fuzz_api programs: two config bytes around the failmalloc byte, then
    operations."""
    (NEW, FRAME, FEED, MODE, WRITABLE, CLOSE, ABORT, JOIN, LEAVE, USER,
     SEND_DEVICE, BROADCAST, PUSH, POST, TICK, SHUTDOWN, FREE, SEND, ARM,
     DEVICES, UPGRADE, PREP, MUX) = range(23)
    REFUSE, SAMEUSER, DROP, BADCLOSE, SENDV, NOCLOSETO, SMALLQ, NODEV = (
        1, 2, 4, 8, 16, 32, 64, 128)
    # second config byte
    CAP1, CAP2, CAP3, SP_LIST, SP_SELECT, OR_LIST, OR_CHECK, KEEP, NOHTTP = (
        1, 2, 3, 4, 8, 16, 32, 64, 128)
    ECHO, BCAST, CLOSEA, JOINA, LEAVEA, USERA, FAILA, FREEA = range(8)
    PING, PONG, CLOSEF, CLOSE0, FRAGS, BINARY, BADJSON, BADUTF8, GARBAGE = (
        range(1, 10))
    (CB_SEND, CB_WANT, CB_CLOSE, CB_OPEN, CB_ON_CLOSE, CB_LOG, CB_HANDLER,
     CB_UPGRADE, CB_SHUTDOWN, CB_HTTP) = range(10)
    M_BLOCK, M_PARTIAL = 2 << 3, 1 << 3
    ANSWER, HEAD, ABSOLUTE, QUERY_IN_PATH = 1, 1 << 4, 1 << 6, 1 << 7
    PLAIN, OTHER_PATH = 3 << 4, 2 << 4  # request kinds (extras bits 4-5)

    def extras(origin=0, offer=0, kind=0, beh=0):
        return origin | offer << 2 | kind | beh << 6

    def new(slot, dev, user=0, group=0, refuse=False, nodev=False, split=0,
            e=0):
        a = slot | dev << 3 | (0x20 if nodev else 0) | split << 6
        return bytes([NEW, a, user | group << 2 | (16 if refuse else 0), e])

    def upg(slot, dev, m=0, e=0, user=0, refuse=False, mutation=0):
        a = slot | dev << 3
        b = user | (16 if refuse else 0)
        return bytes([UPGRADE, a, b, e, m | mutation << 1])

    def msg(slot, action, data=0):
        return bytes([FRAME, slot, 0, action, data])

    def fr(slot, kind, a=0, d=0):
        return bytes([FRAME, slot, kind, a, d])

    def op(*b):
        return bytes(b)

    def arm(cb, *program):
        return bytes([ARM, cb]) + bytes(program).ljust(6, b"\0")

    def prog(flags, *ops, fail_at=0, flags2=0):
        return bytes([flags, fail_at, flags2]) + b"".join(ops)

    seeds = {
        "echo-two-conns": prog(0, new(0, 0), new(1, 1), msg(0, ECHO, 0x45),
                               msg(1, BCAST, 0x83), op(TICK, 10)),
        "replace-same-device": prog(0, new(0, 2, user=1), new(1, 2, user=1),
                                    fr(0, CLOSEF, 0, 3), op(TICK, 0xC4),
                                    op(SEND_DEVICE, 2)),
        "refuse-duplicate": prog(REFUSE, new(0, 1), new(1, 1),
                                 op(CLOSE, 0, 0x08), new(2, 1), msg(2, ECHO)),
        "same-user-duplicate": prog(SAMEUSER, new(0, 3, user=1),
                                    new(1, 3, user=2), new(2, 3, user=1),
                                    op(TICK, 0xF0)),
        "groups-users": prog(0, new(0, 0, user=1, group=1),
                             new(1, 1, user=1, group=2), op(JOIN, 1, 0),
                             op(LEAVE, 0, 0), op(USER, 1, 2), op(PUSH, 0),
                             op(PUSH, 1), op(PUSH, 3), msg(0, JOINA),
                             msg(1, LEAVEA), msg(0, USERA), msg(1, 10)),
        "device-lists": prog(0, new(0, 0), new(1, 1), new(2, 2, nodev=True),
                             op(BROADCAST, 4, 0, 1, 0, 4),
                             op(DEVICES, 3, 1, 5, 6), op(DEVICES, 0),
                             op(BROADCAST, 0), op(SEND_DEVICE, 6)),
        "blocked-queue-full": prog(SMALLQ, new(0, 0), new(1, 1),
                                   op(MODE, 1 | M_BLOCK), msg(0, BCAST, 0xBF),
                                   msg(0, BCAST, 0xBF), op(SEND, 1, 2),
                                   op(TICK, 0xC8), op(TICK, 0xD0)),
        "blocked-drop-policy": prog(SMALLQ | DROP | SENDV, new(0, 0),
                                    new(1, 1), op(MODE, 1 | M_BLOCK),
                                    msg(0, BCAST, 0xBF), msg(0, BCAST, 0xBF),
                                    op(MODE, 1 | M_PARTIAL | 1 << 6),
                                    op(WRITABLE, 1), op(WRITABLE, 1)),
        "shutdown-drain": prog(0, new(0, 0), new(1, 1), new(2, 2, split=1),
                               op(MODE, 1 | M_BLOCK), op(SEND, 1, 2),
                               op(SHUTDOWN, 2), fr(0, CLOSEF, 1, 0),
                               op(TICK, 0xC2), op(TICK, 0xF0)),
        "post-and-tick": prog(0, new(0, 0, user=2, group=3), new(1, 1),
                              op(POST, 0), op(POST, 1), op(POST, 2 | 4),
                              op(POST, 3 | 8), op(TICK, 1), op(POST, 0),
                              op(SHUTDOWN, 0)),
        # the host's sends refused by a full queue (WS_EQUEUEFULL, counted
        # in drops_queue_full) and ws_send_device to ids nobody holds
        # (counted in unknown_targets)
        "host-send-queue-full": prog(
            DROP | SMALLQ, new(0, 0), op(MODE, M_BLOCK), op(SEND, 0, 5),
            op(SEND, 0, 5), op(SEND, 0, 5), op(SEND_DEVICE, 6),
            op(SEND_DEVICE, 3)),
        # posts between direct sends and fan-outs (tagged: fz_out checks
        # their order), one posted from a send callback
        "post-between-direct-sends": prog(
            0, new(0, 0), new(1, 1), op(SEND, 0, 0), op(POST, 0),
            op(SEND, 0, 0), op(BROADCAST, 0), op(TICK, 1), op(SEND, 0, 0),
            arm(CB_SEND, POST, 0), op(SEND, 1, 0), op(SEND, 1, 0),
            op(TICK, 1), op(BROADCAST, 0)),
        "frames-mixed": prog(BADCLOSE, new(0, 0), fr(0, PING, 0, 5),
                             fr(0, PONG), fr(0, FRAGS, ECHO, 0x47),
                             fr(0, BINARY, 0, 9), fr(0, 10), fr(0, BADJSON),
                             msg(0, 8), msg(0, FAILA)),
        "frames-bad": prog(0, new(0, 0), new(1, 1), new(2, 2),
                           fr(0, BADUTF8), fr(1, GARBAGE, 0x81, 0x7F),
                           fr(2, CLOSEF, 5, 1), op(TICK, 0xF0)),
        "split-request-and-frames": prog(NODEV, new(0, 0, nodev=True,
                                                    split=2),
                                         op(FEED, 0 | 1 << 3),
                                         op(FEED, 0), fr(0, 0 | 1 << 6, ECHO),
                                         op(FEED, 0), op(TICK, 0xC5)),
        "host-close-abort": prog(NOCLOSETO, new(0, 0), new(1, 1), new(2, 2),
                                 op(CLOSE, 0, 0), op(CLOSE, 0, 0),
                                 op(CLOSE, 1, 0x1C), op(ABORT, 2),
                                 msg(0, ECHO), op(TICK, 0xF0)),
        "reenter-on-close-aborts-other": prog(
            0, new(0, 0), new(1, 1), arm(CB_ON_CLOSE, ABORT, 1, 0, 0),
            op(SHUTDOWN, 2), op(ABORT, 0)),
        "reenter-on-close-ticks": prog(
            0, new(0, 0), new(1, 1), arm(CB_ON_CLOSE, TICK, 0, 0, 0),
            op(SHUTDOWN, 0), op(TICK, 0)),
        "reenter-send-shuts-down": prog(
            SENDV, new(0, 0), arm(CB_SEND, SHUTDOWN, 1, 0, 0),
            msg(0, ECHO)),
        "reenter-handler-frees": prog(
            0, new(0, 0), new(1, 1), arm(CB_HANDLER, FREE, 0, 0, 0),
            msg(1, ECHO)),
        "reenter-open-broadcast": prog(
            0, new(0, 0), arm(CB_OPEN, BROADCAST, 0, 0, 0), new(1, 1),
            arm(CB_LOG, CLOSE, 1, 0, 0), msg(0, 8)),
        "reenter-want-write-closes": prog(
            0, new(0, 0), op(MODE, 0 | M_BLOCK),
            arm(CB_WANT, CLOSE, 0, 0, 0), op(SEND, 0, 0)),
        "reenter-close-new-conn": prog(
            0, new(0, 0), arm(CB_CLOSE, NEW, 1, 0, 0), op(ABORT, 0)),
        "handler-frees-server": prog(0, new(0, 0), new(1, 1),
                                     msg(0, FREEA)),
        "free-at-top": prog(0, new(0, 0), op(FREE, 0)),
        "upgrade-preparsed": prog(0, upg(0, 0), upg(1, 1, ANSWER),
                                  upg(1, 1), msg(0, ECHO), msg(1, ECHO),
                                  op(WRITABLE, 1), op(TICK, 10)),
        "upgrade-odd-headers": prog(0, *[upg(i, i & 3, m, mutation=i)
                                         for i, m in enumerate(
                                             [0, ANSWER, HEAD, ABSOLUTE,
                                              QUERY_IN_PATH, ANSWER | HEAD,
                                              2 << 4, 3 << 4])]),
        "upgrade-answer-on-open-sends": prog(
            SMALLQ, arm(CB_OPEN, SEND, 0, 2), upg(0, 0, ANSWER),
            op(MODE, 0 | M_PARTIAL), op(WRITABLE, 0), op(WRITABLE, 0)),
        "on-http-answers": prog(NODEV, new(0, 0, e=extras(kind=PLAIN)),
                                new(1, 0, e=extras(kind=PLAIN, beh=1)),
                                new(2, 0, e=extras(kind=OTHER_PATH, beh=2)),
                                new(3, 0, e=extras(kind=PLAIN, beh=3)),
                                upg(4, 0, e=extras(kind=PLAIN, beh=1)),
                                upg(5, 0, HEAD, e=extras(kind=PLAIN,
                                                         beh=1))),
        "on-http-nested-upgrade": prog(
            0, arm(CB_HTTP, NEW, 1, 0, 0), new(0, 0, e=extras(kind=PLAIN,
                                                             beh=1))),
        "max-connections": prog(0, new(0, 0), new(1, 1), new(2, 2),
                                op(CLOSE, 0, 0), fr(0, CLOSEF),
                                new(3, 3), op(TICK, 0xF0), new(4, 2),
                                flags2=CAP2),
        "max-connections-nested": prog(
            0, arm(CB_UPGRADE, UPGRADE, 1, 0, 0, 0), new(0, 0), new(2, 2),
            flags2=CAP1),
        "subprotocols-list": prog(0, *[new(i, i, e=extras(offer=i))
                                       for i in range(4)], flags2=SP_LIST),
        "subprotocols-select": prog(
            0, *[upg(i, i & 3, i >> 2 & 1, e=extras(offer=1 + (i & 1),
                                                     beh=i >> 1 & 3))
                 for i in range(8)], flags2=SP_SELECT | SP_LIST),
        "origins-check": prog(0, *[new(i, i, e=extras(origin=i))
                                   for i in range(4)],
                              flags2=OR_CHECK | KEEP),
        "origins-list": prog(0, *[upg(i, i, e=extras(origin=i))
                                  for i in range(4)], flags2=OR_LIST),
        "prepared-freed-while-queued": prog(
            SMALLQ, new(0, 0), new(1, 1), op(MODE, 1 | M_BLOCK),
            op(PREP, 0), op(PREP, 3), op(PREP, 4), op(PREP, 8, 1),
            op(PREP, 10, 1), op(PREP, 11, 0), op(PREP, 6),
            op(MODE, 1), op(WRITABLE, 1), op(PREP, 9, 0)),
        "mux-entries": prog(
            0, new(0, 0), op(MUX, 0), op(MUX, 0), op(MUX, 8),
            arm(CB_HANDLER, MUX, 1), msg(0, ECHO), msg(0, ECHO),
            msg(0, JOINA), op(MUX, 2), msg(0, 8), op(MUX, 3),
            fr(0, BINARY, 0, 5), op(MUX, 0xFF)),
        "mux-serve-from-host": prog(
            0, new(0, 0), new(1, 1), op(MUX, 0), op(MUX, 0xFE, 0, ECHO),
            op(MUX, 0xFE, 1, 0xFF), op(MUX, 0xFE, 1, BCAST), op(MUX, 2),
            arm(CB_HANDLER, CLOSE, 1, 0), op(MUX, 0xFE, 0, JOINA),
            op(MUX, 0xFE, 0, FREEA)),
        "client-close-timeout": prog(0, new(0, 0), new(1, 1),
                                     op(CLOSE, 0, 0), op(TICK, 0xC2),
                                     fr(1, CLOSEF, 2, 3), op(TICK, 0xC3),
                                     op(TICK, 0xC3)),
        "free-from-send": prog(0, new(0, 0), arm(CB_SEND, FREE, 0),
                               msg(0, ECHO)),
        "free-from-on-close": prog(0, new(0, 0), new(1, 1),
                                   arm(CB_ON_CLOSE, FREE, 0),
                                   fr(1, CLOSEF)),
        "free-from-close": prog(0, new(0, 0), arm(CB_CLOSE, FREE, 0),
                                op(ABORT, 0)),
        "failmalloc-conns": prog(0, new(0, 0, group=1), new(1, 1),
                                 msg(0, BCAST, 0x50), fail_at=20),
    }
    for name, data in seeds.items():
        write("api", name, data)


def main():
    for t in ("api", "conn", "envelope", "handshake", "upgrade"):
        shutil.rmtree(os.path.join(HERE, "corpus", t), ignore_errors=True)
    conn_seeds()
    envelope_seeds()
    handshake_seeds()
    upgrade_seeds()
    api_seeds()


if __name__ == "__main__":
    main()
