/*
 * Pure protocol helpers: no server state. Each function is a transform
 * over the caller's bytes, so each is tested on its own; only request.c
 * allocates (through the allocator it is given).
 *   sha1.c       SHA-1 (RFC 3174), for the accept key only
 *   siphash.c    SipHash-2-4, for the tables keyed by what peers choose
 *   base64.c     base64 encode/decode (RFC 4648)
 *   utf8.c       incremental UTF-8 validator
 *   handshake.c  HTTP/1.1 request parser, RFC 6455 4.2.1 checks, responses
 *   request.c    ws_request, the one-allocation copy of a parsed request
 * Never installed.
 */
#ifndef WS_PROTO_H
#define WS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "wsmux.h"

/* ---- sha1.c ------------------------------------------------------------ */
typedef struct ws__sha1 {
  uint32_t h[5];
  uint64_t len; /* bytes hashed so far */
  uint8_t block[64];
  size_t fill;
} ws__sha1;
void ws__sha1_init(ws__sha1 *ctx);
void ws__sha1_update(ws__sha1 *ctx, const void *data, size_t len);
void ws__sha1_final(ws__sha1 *ctx, uint8_t digest[20]);

/* ---- siphash.c --------------------------------------------------------- */
/* SipHash-2-4 of data under a 128-bit key. */
uint64_t ws__siphash(const uint8_t key[16], const void *data, size_t len);
/* A secret key for one table owner (salt: its address). */
void ws__hash_key_init(uint8_t key[16], const void *salt);

/* ---- base64.c ---------------------------------------------------------- */
/* Writes 4*ceil(n/3) chars (no NUL) to out; returns that count. */
size_t ws__base64_encode(const uint8_t *in, size_t n, char *out);
/* Decodes strict, padded base64. Returns the decoded length, or -1 when the
 * input is not valid base64 or would not fit in cap bytes. Strict: length a
 * multiple of 4, no whitespace, '=' only as final padding, and the unused
 * bits before the padding must be zero (canonical encoding only). */
long ws__base64_decode(const char *in, size_t n, uint8_t *out, size_t cap);

/* ---- utf8.c ------------------------------------------------------------ */
/* Incremental validator. Start with WS__UTF8_ACCEPT and pass each call's
 * result to the next; a message is valid when the final state is ACCEPT.
 * State 0 = accept (at a character boundary);
 * WS__UTF8_REJECT is sticky; anything else = inside a sequence. Fails fast:
 * returns REJECT at the first byte that cannot start or continue a valid
 * sequence (overlongs, surrogates, > U+10FFFF, stray continuation bytes). */
#define WS__UTF8_ACCEPT 0u
#define WS__UTF8_REJECT 1u
uint32_t ws__utf8_validate(uint32_t state, const uint8_t *p, size_t n);

/* ---- handshake.c ------------------------------------------------------- */

/* A request as slices of the caller's buffer (zero-copy), whether parsed by
 * ws__http_parse or given by a host that parsed it (ws_conn_upgrade). */
typedef struct ws__reqview {
  const char *method;
  size_t method_len;
  const char *path; /* request target up to '?', raw (percent-encoded) */
  size_t path_len;
  const char *query; /* after '?', raw; NULL/0 when none */
  size_t query_len;
  const char *authority; /* an absolute-form target's host[:port] (what */
  size_t authority_len;  /* stands for Host then); NULL/0 otherwise */
  int http_minor;    /* 1 for HTTP/1.1; 0 for HTTP/1.0 */
  const ws_header *headers;
  size_t header_count;
} ws__reqview;

enum ws__http_result {
  WS__HTTP_COMPLETE = 0,   /* *consumed = bytes up to and incl. CRLFCRLF */
  WS__HTTP_INCOMPLETE = 1, /* need more bytes; nothing invalid so far */
  WS__HTTP_INVALID = 2,    /* malformed request: 400 */
  WS__HTTP_TOO_MANY = 3    /* more than max_headers headers: 431 */
};

/* Parses an HTTP/1.x request head from buf[0..len). headers[] (max_headers
 * entries, caller-owned) receives header slices; view->headers points at it.
 * Strict: request line "METHOD SP target SP HTTP/1.x CRLF", header names are
 * tokens, values have surrounding whitespace trimmed, obs-fold refused, bare
 * LF accepted as line end. No allocation.
 * Details: the target is a run of visible ASCII (split at the first '?';
 * "/p?" gives a non-NULL empty query) whose part before the '?' is one
 * ws__target_path takes, refused (INVALID) from its first byte that no
 * such target can start with; the version must be "HTTP/1." DIGIT;
 * no whitespace before ':' or at the start of a header line; control bytes
 * other than HTAB in a value are refused; empty lines before the request
 * line are refused. Each malformed byte is reported (INVALID) as soon as it
 * is seen, so INCOMPLETE means "every byte so far is valid". TOO_MANY is
 * returned as soon as header max_headers+1 starts. Reads only buf[0..len).
 * *consumed and view->headers/header_count are set on COMPLETE only; other
 * view fields and headers[] may be partly written on any result. Call again
 * with the whole (longer) buffer after INCOMPLETE: no state is kept (but
 * see ws__http_parse_resume). */
int ws__http_parse(const char *buf, size_t len, ws_header *headers,
                   size_t max_headers, ws__reqview *view, size_t *consumed);

/* Where a parse that answered INCOMPLETE got to: every line before from is
 * complete and valid, and count of them are headers (from 0: the request
 * line is not complete yet). */
typedef struct ws__http_mark {
  size_t from;
  size_t count;
} ws__http_mark;
/* ws__http_parse(buf, len, ...) that does not read again the lines an
 * earlier INCOMPLETE answer, for a prefix of buf, left *mark after (a
 * zeroed mark: none, the whole buffer is read). Same result; *mark moves
 * on INCOMPLETE. On COMPLETE from a mark the head is read once more, to
 * fill headers[] and view. So a head that arrives a line (or a byte) at
 * a time costs O(its bytes), not O(lines x bytes). */
int ws__http_parse_resume(const char *buf, size_t len, ws__http_mark *mark,
                          ws_header *headers, size_t max_headers,
                          ws__reqview *view, size_t *consumed);

/* Sets v->path (and v->authority) from t[0..n), a request target's part
 * before its '?' (v->method and v->query already set), and returns 0; -1
 * when it is no target a server can take for GET: origin-form "/p";
 * absolute-form "http(s)://authority[/p]" (RFC 9112 3.2.2 requires
 * accepting it), whose host must not be empty (RFC 9110 4.2.1) nor carry
 * userinfo (RFC 9110 4.2.4: "u@host" is refused) and whose empty path is
 * "/" (RFC 9110 4.2.3: v->path is then a static "/", the
 * one slice not inside t); asterisk-form "*" only for OPTIONS without a
 * query (RFC 9112 3.2.4). Anything else ("ws", "%2Fws", "" before a
 * query) names no path, and would have matched the configured one once
 * decoded, or any with path NULL. */
int ws__target_path(ws__reqview *v, const char *t, size_t n);
/* 1 if every byte of t[0..n) may stand in a request target as the parser
 * reads one: visible ASCII but '#' (no space, control byte, non-ASCII byte
 * or fragment). For a target a host parsed (ws_conn_upgrade). */
int ws__target_bytes_ok(const char *t, size_t n);

/* Result of the RFC 6455 4.2.1 checks. */
typedef struct ws__upgrade_check {
  int status;         /* 0: valid upgrade; else HTTP status to refuse with */
  const char *reason; /* static one-line reason when status != 0 */
  int is_upgrade;     /* the request asks for a WebSocket upgrade at all
                         (has Upgrade: websocket); 0 means plain HTTP */
  const char *key;    /* Sec-WebSocket-Key value (slice) when valid */
  size_t key_len;
} ws__upgrade_check;

/* Checks method GET, HTTP/1.1 or later, Host present, Upgrade and Connection
 * token lists (case-insensitive) containing "websocket" / "upgrade",
 * Sec-WebSocket-Version 13 (else 426), Sec-WebSocket-Key decoding to 16 bytes
 * (else 400). Duplicate Host/Key/Version headers are a 400.
 * Checks run in this order; the first failure decides:
 *   400 "method must be GET"                (exact, case-sensitive)
 *   400 "HTTP/1.1 required"
 *   400 "missing Host header" / "duplicate Host header" /
 *       "invalid Host header" (not uri-host[":" port], ws__host_value_ok)
 *   426 "missing or invalid Upgrade header" (also whenever is_upgrade == 0)
 *   400 "missing Connection: Upgrade"
 *   400 "duplicate Sec-WebSocket-Version header"
 *   426 "unsupported Sec-WebSocket-Version" (missing or not exactly "13")
 *   400 "an upgrade request has no content" (Transfer-Encoding, or a
 *       Content-Length other than 0)
 *   400 "missing Sec-WebSocket-Key" / "duplicate Sec-WebSocket-Key header" /
 *       "invalid Sec-WebSocket-Key"
 * is_upgrade is computed independently of status (any Upgrade header lists
 * "websocket"), so a caller can route plain HTTP first. A 426 refusal must
 * carry WS__426_HEADERS (pass it as ws__response_http's extra): RFC 9110
 * 15.5.22 requires Upgrade, RFC 6455 4.4 the version we speak. */
#define WS__426_HEADERS \
  "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
void ws__upgrade_validate(const ws__reqview *rv, ws__upgrade_check *out);
/* RFC 9112 3.2 for any request: at most one Host (exactly one in
 * HTTP/1.1), its value, and an absolute-form target's authority, host
 * [":" port] (ws__host_value_ok). 0, or 400 with *why set. */
int ws__check_host(const ws__reqview *rv, const char **why);
int ws__host_value_ok(const char *v, size_t n);
/* RFC 9112 6.3 items 4 and 5 for a request on_http may see: a
 * Content-Length that is not one number (1*DIGIT; several lines must
 * agree), or a Transfer-Encoding whose final coding is not chunked (or any
 * in an HTTP/1.0 request, RFC 9112 6.1), leaves its content's length
 * unknown: 400 with *why set, else 0. */
int ws__check_framing(const ws__reqview *rv, const char **why);
/* Empty lines a request may start with (RFC 9112 2.2); past them, 400. */
#define WS__HTTP_EMPTY_LINES_MAX 4
/* Bytes of CR and LF at the start of buf (the empty lines before a request
 * line), counted up to 2 * WS__HTTP_EMPTY_LINES_MAX + 1. */
size_t ws__empty_lines_len(const char *buf, size_t len);

/* Origin rule: no Origin header -> allowed; Origin equal (case-insensitive)
 * to an entry of allowed[] -> allowed; Origin's host[:port] (after the
 * scheme "://") equal to Host case-insensitively (to an absolute-form
 * target's authority when there is one) -> allowed. Returns 1/0. */
int ws__origin_allowed(const ws__reqview *rv, const char *const *allowed,
                       size_t allowed_count);

/* 1 if a[0..alen) equals b[0..blen), ASCII case-insensitively (no locale). */
int ws__ascii_caseeq(const char *a, size_t alen, const char *b, size_t blen);
/* Drops the optional whitespace (SP, HTAB) around s[0..len): advances *s,
 * returns the length left. */
size_t ws__trim_ows(const char **s, size_t len);
/* First header with this case-insensitive name, or NULL. */
const ws_header *ws__find_header(const ws_header *h, size_t n,
                                 const char *name);
/* Count of headers with this name. */
size_t ws__count_header(const ws_header *h, size_t n, const char *name);
/* 1 if the comma-separated list value contains token (case-insensitive,
 * surrounding whitespace ignored). */
int ws__has_token(const char *value, size_t len, const char *token);
/* The same, case-sensitive: subprotocol names (a client fails a 101 that
 * names one it did not offer, byte for byte). */
int ws__has_token_exact(const char *value, size_t len, const char *token);

/* 0 for the statuses whose responses carry no content (RFC 9110 6.4.1:
 * 1xx, 204, 304; and 205, 15.3.6): no Content-Length, no body. */
int ws__status_has_content(int status);

/* 1 if s is a non-empty RFC 9110 token (a subprotocol name, RFC 6455 4.1). */
int ws__is_token(const char *s);
/* 1 if h is a header the parser would take: a token name, a value of field
 * bytes (no CR, LF or other control byte but HTAB). For headers a host
 * parsed, which reach the 101 (a chosen subprotocol) and handlers. */
int ws__header_well_formed(const ws_header *h);
/* 1 if v (NULL counts as empty) holds no control byte, HTAB included: a
 * value the host passes for a header it adds (CR or LF would end the line
 * and let the string add its own). */
int ws__field_text_ok(const char *v);

/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)), 28 chars + NUL. */
void ws__accept_key(const char *key, size_t key_len, char out[29]);

/* Writes "HTTP/1.1 101 Switching Protocols" with Upgrade, Connection,
 * Sec-WebSocket-Accept, (if subprotocol != NULL) Sec-WebSocket-Protocol and
 * the host's lines (NULL or "Name: value\r\n"..., ws_conn_add_header).
 * Returns the length the response needs; writes only if it fits in cap
 * (call with cap 0 to size it). No NUL terminator. */
size_t ws__response_101(char *out, size_t cap, const char *key, size_t key_len,
                        const char *subprotocol, const char *host_lines);
/* Writes a complete refusal/plain response: status line with the standard
 * reason phrase, "Content-Type: <ctype>" (text/plain when NULL),
 * Content-Length, "Connection: close", extra (NULL or WS__426_HEADERS,
 * with which a 426 says "Connection: Upgrade, close"), the host's lines
 * (as ws__response_101's), blank line, then body. For a refusal body is the
 * one-line reason plus "\n". Returns the total length that the response
 * needs; writes only if it fits in cap (call with cap 0 to size it). */
size_t ws__response_http(char *out, size_t cap, int status, const char *ctype,
                         const char *extra, const char *host_lines,
                         const void *body, size_t body_len);
/* Standard reason phrase for a status ("Bad Request"), "Unknown" otherwise. */
const char *ws__status_text(int status);

/* Percent-decodes src[0..n) into dst (capacity >= n), '+' -> ' ' when
 * plus_is_space. Returns the decoded length, or -1 on a bad %XX escape or a
 * decoded NUL byte. dst may equal src. */
long ws__url_decode(char *dst, const char *src, size_t n, int plus_is_space);

/* ---- request.c --------------------------------------------------------- */
/* ws_request (public opaque type) is one allocation: method, decoded path,
 * decoded query pairs and (optionally) headers, all NUL-terminated strings
 * in one block. Built from a view; freed with ws__free. */
#include "alloc.h"
/* Returns NULL on allocation failure (*err = WS_ENOMEM), a bad
 * percent-encoding in the path (WS_EPROTO) or more than
 * WS_MAX_QUERY_PARAMS query parameters (WS_ELIMIT). A query parameter with
 * a bad escape reads as absent in a returned request, which then comes
 * with *err = WS_EPROTO (else WS_OK). */
ws_request *ws__request_build(const struct ws__alloc *a, const ws__reqview *rv,
                              int with_headers, int *err);
void ws__request_free(const struct ws__alloc *a, ws_request *r);
/* Bytes the request occupies (for memory accounting tests). */
size_t ws__request_size(const ws_request *r);

#endif /* WS_PROTO_H */
