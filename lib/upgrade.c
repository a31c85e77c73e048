/*
 * The HTTP side of a connection: buffer the request head (zero-copy when it
 * arrives in one feed), run the upgrade checks in the documented order, and
 * answer 101, a refusal, or hand a plain request to on_http.
 *
 * Order of checks (the first failing one answers):
 *   malformed 400 / too large 414 (the request line) or 431 -> a bad
 *   percent-encoding in the path 400 -> not an upgrade: Host or framing
 *   400, then on_http, else 426 on the path or 404 -> a bad
 *   percent-encoding in the query 400 -> wrong path 404 -> RFC 6455
 *   checks 400/426 -> shutting down or connection cap 503 -> Origin 403
 *   -> device id 400 -> a subprotocol picked but not offered 500 ->
 *   on_upgrade (its status) -> connection cap 503 again (others opened
 *   from those callbacks) -> duplicate device id 409 (WS_DUP_REFUSE, or
 *   WS_DUP_REPLACE_SAME_USER and another user). Out of memory at any
 *   step: 503.
 */
#include <string.h>

#include "internal.h"

#define WS__HEADERS_HARD_MAX 256

/* ws_conn_upgrade_answer: the host writes the HTTP response, so the
 * outcome is reported here instead of queued. */
struct ws__answer {
  ws_conn *c;
  int status;
  const char *reason;
  char accept[29];
};

static int answering(const ws_conn *c) {
  return c->s->answer != NULL && c->s->answer->c == c;
}

static enum ws_refusal refusal_kind(int status) {
  switch (status) {
  case 400: return WS_REFUSE_BAD_REQUEST;
  case 403: return WS_REFUSE_FORBIDDEN;
  case 404: return WS_REFUSE_NOT_FOUND;
  case 409: return WS_REFUSE_CONFLICT;
  case 426: return WS_REFUSE_VERSION;
  case 414:
  case 431: return WS_REFUSE_TOO_LARGE;
  case 503: return WS_REFUSE_UNAVAILABLE;
  default: return WS_REFUSE_OTHER;
  }
}

/* Queues a complete HTTP response and closes once it is written. */
static int respond(ws_conn *c, int status, const char *ctype, const char *extra,
                   const void *body, size_t len) {
  ws_server *s = c->s;
  const char *lines = ws__hdrs_take(c);
  size_t need =
      ws__response_http(NULL, 0, status, ctype, extra, lines, body, len);
  ws__buf *b = ws__buf_raw(s, NULL, need);
  if (b) {
    ws__response_http((char *)b->data, need, status, ctype, extra, lines,
                      body, len);
    /* To HEAD the same head, Content-Length included, and no content (RFC
     * 9110 9.3.2): the body is simply left off the end. */
    if (c->marks & WS__M_HEAD) b->len -= (uint32_t)len;
  }
  if (ws__conn_push_new(c, b) != WS_OK) {
    ws__conn_finish(c, WS_CLOSE_ABNORMAL, "out of memory");
    return WS_ENOMEM;
  }
  c->flags |= WS__F_RESPONDED;
  c->state = WS__DRAINING;
  ws__conn_start_closing(c); /* a client that never reads the answer */
  return WS_OK;
}

static int refuse(ws_conn *c, int status, const char *reason) {
  char body[160];
  size_t n;
  if (reason == NULL) reason = ws__status_text(status);
  c->s->st.refusals[refusal_kind(status)]++;
  if (answering(c)) {
    c->s->answer->status = status;
    c->s->answer->reason = reason;
  }
  ws__log(c->s, WS_LOG_INFO, "upgrade refused: %d %s", status, reason);
  /* on_log closed it, or answered it: a tick there passed the handshake
   * deadline (408), or, from the 408's own line (no feed of it on the
   * stack), upgraded it. That answer stands; a second one would follow
   * it on the wire (after a 101, inside the WebSocket stream). */
  if (c->state != WS__HANDSHAKE) return WS_ECLOSED;
  if (answering(c)) {
    ws__conn_finish(c, WS_CLOSE_ABNORMAL, reason);
    return WS_OK;
  }
  n = WS__MIN(strlen(reason), sizeof(body) - 2);
  memcpy(body, reason, n);
  body[n++] = '\n';
  return respond(c, status, "text/plain; charset=utf-8",
                 status == 426 ? WS__426_HEADERS : NULL, body, n);
}

int ws_conn_http_respond(ws_conn *c, int status, const char *content_type,
                         const void *body, size_t len) {
  /* A final status only: the connection closes after this answer, so a
   * 1xx (interim, RFC 9110 15.2) would leave the client with none; codes
   * past 599 are not HTTP's (RFC 9110 15). */
  if (c == NULL || status < 200 || status > 599 || (body == NULL && len) ||
      (len && !ws__status_has_content(status)) ||
      !ws__field_text_ok(content_type))
    return WS_EINVAL;
  /* ... and not from inside another request's callbacks that on_http ran
   * (the lines it added would be out of reach under that one's). */
  if (!(c->flags & WS__F_IN_HTTP) || (c->flags & WS__F_RESPONDED) ||
      (c->state == WS__HANDSHAKE && c->s->hdr_owner != c))
    return WS_ESTATE;
  /* Closed from inside on_http (ws_conn_close, ws_server_shutdown): the
   * connection is on its way to be freed and its transport is closed. */
  if (c->state != WS__HANDSHAKE) return WS_ECLOSED;
  /* Sizes last: a call in the wrong state is told so whatever it holds. */
  if (len > WS__MESSAGE_MAX) return WS_ETOOBIG; /* no frame buffer holds it */
  /* The whole answer in one buffer (32-bit length): the head and the lines
   * added may take a body under the limit above past it. Told before
   * respond(), which ends the connection when it cannot build one. */
  if (ws__response_http(NULL, 0, status, content_type, NULL,
                        ws__hdrs_peek(c), body, len) >
      UINT32_MAX - sizeof(ws__buf))
    return WS_ETOOBIG;
  return respond(c, status, content_type, NULL, body, len);
}

static int path_matches(const ws_server *s, const ws_request *r) {
  return s->cfg.path == NULL || strcmp(s->cfg.path, ws_request_path(r)) == 0;
}

static int origin_ok(ws_conn *c, const ws__reqview *rv) {
  const ws_config *cfg = &c->s->cfg;
  /* One origin per request (RFC 6454 7.3). Refused before the callback,
   * which sees one origin string and could not tell there were two. */
  if (ws__count_header(rv->headers, rv->header_count, "Origin") > 1)
    return 0;
  if (cfg->check_origin) {
    const char *o = ws_request_header(c->req, "Origin");
    return cfg->check_origin(c->req, o, cfg->user_data) == 1;
  }
  return ws__origin_allowed(rv, cfg->allowed_origins,
                            cfg->allowed_origins_count);
}

static const char k_protocol[] = "Sec-WebSocket-Protocol";

/* The first Sec-WebSocket-Protocol line in [h, end), or NULL. */
static const ws_header *next_protocol(const ws_header *h,
                                      const ws_header *end) {
  return ws__find_header(h, (size_t)(end - h), k_protocol);
}

/* The client's offer (NULL: none): every Sec-WebSocket-Protocol line
 * joined with ", " (RFC 6455 11.3.4: several lines are one list). One line
 * is the request's own NUL-terminated copy; with more, *joined gets the
 * allocation to free (bounded by max_handshake). Returns WS_OK or
 * WS_ENOMEM. */
static int offered_list(ws_conn *c, const ws__reqview *rv,
                        const char **offered, char **joined) {
  const ws_header *h, *end = rv->headers + rv->header_count;
  size_t need = 1;
  char *o;
  *offered = ws_request_header(c->req, k_protocol);
  *joined = NULL;
  if (ws__count_header(rv->headers, rv->header_count, k_protocol) < 2)
    return WS_OK;
  for (h = next_protocol(rv->headers, end); h; h = next_protocol(h + 1, end))
    need += h->value_len + 2;
  if ((o = *joined = ws__malloc(&c->s->al, need)) == NULL) return WS_ENOMEM;
  for (h = next_protocol(rv->headers, end); h; h = next_protocol(h + 1, end)) {
    if (o != *joined) *o++ = ',', *o++ = ' ';
    if (h->value_len) /* a host's empty value may be NULL */
      memcpy(o, h->value, h->value_len);
    o += h->value_len;
  }
  *o = '\0';
  *offered = *joined;
  return WS_OK;
}

/* The first configured subprotocol in offered, or the callback's pick,
 * copied into c->subprotocol: a callback may return a pointer into offered,
 * which keep_headers = 0 frees before the 101 is written. A pick the
 * client did not offer would make it fail the connection (RFC 6455 4.1),
 * and one that is not a token (an offer may hold any field bytes) is not a
 * subprotocol name (RFC 6455 4.3): WS_EINVAL. */
static int pick_from(ws_conn *c, const char *offered) {
  const ws_config *cfg = &c->s->cfg;
  const char *pick = NULL;
  size_t i, n = strlen(offered);
  if (cfg->select_subprotocol) {
    pick = cfg->select_subprotocol(c->req, offered, cfg->user_data);
    if (pick && (!ws__is_token(pick) || !ws__has_token_exact(offered, n, pick)))
      return WS_EINVAL;
  }
  for (i = 0; !cfg->select_subprotocol && i < cfg->subprotocols_count; i++) {
    if (ws__has_token_exact(offered, n, cfg->subprotocols[i])) {
      pick = cfg->subprotocols[i];
      break;
    }
  }
  if (pick && (c->subprotocol = ws__strdup(&c->s->al, pick)) == NULL)
    return WS_ENOMEM;
  return WS_OK;
}

static int pick_subprotocol(ws_conn *c, const ws__reqview *rv) {
  const char *offered;
  char *joined;
  int rc = offered_list(c, rv, &offered, &joined);
  if (rc == WS_OK && offered) rc = pick_from(c, offered);
  ws__free(&c->s->al, joined);
  return rc;
}

static int refuse_plain(ws_conn *c) {
  return path_matches(c->s, c->req) ? refuse(c, 426, "upgrade required")
                                    : refuse(c, 404, "not found");
}

/* on_http's answer, or the library's; with the lines on_http added
 * (ws_conn_add_header) either way. */
static int plain_http(ws_conn *c) {
  ws_server *s = c->s;
  ws__hdrs_window w;
  int rc = WS_OK;
  if (answering(c)) return refuse_plain(c);
  ws__hdrs_open(c, &w);
  if (s->cfg.on_http) {
    c->flags |= WS__F_IN_HTTP;
    s->cfg.on_http(c, c->req, s->cfg.user_data);
    c->flags &= (uint8_t)~WS__F_IN_HTTP;
  }
  if (c->state != WS__DEAD && !(c->flags & WS__F_RESPONDED))
    rc = refuse_plain(c);
  ws__hdrs_close(s, &w);
  return rc;
}

/* Takes the device id from the query. Returns NULL, or the 400's reason.
 * An id is text (handlers quote it into JSON, logs print it), so it must
 * decode to UTF-8, as a text frame must. */
static const char *take_device_id(ws_conn *c) {
  const ws_config *cfg = &c->s->cfg;
  const char *id = cfg->device_param ? ws_request_query(c->req, cfg->device_param)
                                     : NULL;
  size_t n;
  if (id && *id == '\0') id = NULL;
  if (id == NULL) return cfg->device_required ? "missing device_id" : NULL;
  if ((n = strlen(id)) > cfg->max_device_id) return "device_id too long";
  if (!ws__field_text_ok(id)) /* it is logged and quoted: no CR, LF... */
    return "device_id has a control character";
  if (ws__utf8_validate(WS__UTF8_ACCEPT, (const uint8_t *)id, n) !=
      WS__UTF8_ACCEPT)
    return "device_id is not UTF-8";
  c->device_id = id;
  return NULL;
}

/* The 101 on the queue (its length depends on the subprotocol, which may
 * be as long as a header). */
static int queue_101(ws_conn *c, const ws__upgrade_check *chk) {
  ws_server *s = c->s;
  const char *lines = ws__hdrs_peek(c); /* a 503 instead carries them */
  size_t n = ws__response_101(NULL, 0, chk->key, chk->key_len, c->subprotocol,
                              lines);
  ws__buf *b = ws__buf_raw(s, NULL, n);
  if (b)
    ws__response_101((char *)b->data, n, chk->key, chk->key_len,
                     c->subprotocol, lines);
  if (ws__conn_push_new(c, b) != WS_OK) return WS_ENOMEM;
  ws__hdrs_take(c);
  return WS_OK;
}

/* Everything checked: queue the 101, take the device id, open. Whatever
 * can fail comes before the device id is taken: an older connection with
 * the id is closed only for a newer one that does open. */
static int accept_upgrade(ws_conn *c, const ws__upgrade_check *chk) {
  ws_server *s = c->s;
  /* Room for its deadline first: once it is open, running out of memory
   * there would close it between the 101 and on_open. */
  if (ws__timer_reserve(s) != WS_OK ||
      (!answering(c) && queue_101(c, chk) != WS_OK))
    return refuse(c, 503, "out of memory");
  /* Its entry taken now, while the room holds (replacing an older holder
   * of the device id arms that one's close timer, on_log may close others:
   * either can use the room), so that opening only moves it. It cannot fire
   * before then. */
  if (c->heap_idx == UINT32_MAX) ws__timer_set(s, c, UINT64_MAX);
  if (c->device_id) {
    ws__registry_add_device(c);
    if (c->state == WS__DEAD) return WS_ECLOSED; /* by on_log */
  }
  if (answering(c)) { /* the host writes the 101 */
    s->answer->status = 101;
    ws__accept_key(chk->key, chk->key_len, s->answer->accept);
  }
  c->state = WS__OPEN;
  c->flags |= WS__F_COUNTED | WS__F_OPENED;
  s->opening--; /* its held place becomes an open one */
  s->st.conns_pending--;
  s->st.conns_open++;
  s->st.conns_total++;
  c->last_read = c->last_write = s->now;
  ws__conn_rearm(c);
  if (s->cfg.on_open) s->cfg.on_open(c, s->cfg.user_data);
  return WS_OK;
}

/* keep_headers = 0: the request the connection keeps is rebuilt without
 * headers before on_upgrade, so every pointer the host can take from the
 * connection there (device id, ws_conn_request and its strings) stays
 * valid for the connection's life. *full keeps the whole request for
 * on_upgrade's req; the caller frees it when it differs from c->req. */
static int compact_request(ws_conn *c, const ws__reqview *rv,
                           ws_request **full) {
  int err;
  ws_request *r;
  *full = c->req;
  if (c->s->cfg.keep_headers) return WS_OK;
  r = ws__request_build(&c->s->al, rv, 0, &err);
  if (r == NULL) return err;
  c->req = r;
  if (c->device_id)
    c->device_id = ws_request_query(r, c->s->cfg.device_param);
  return WS_OK;
}

/* on_upgrade's verdict, answered: WS_OK to go on, else the connection
 * was refused or ended. The reason may point into the full request, which
 * lives until the refusal is written. */
static int ask_host(ws_conn *c, const ws__reqview *rv) {
  ws_server *s = c->s;
  ws_request *full;
  const char *reason = NULL;
  int status = 0, rc = WS_OK;
  if (compact_request(c, rv, &full) != WS_OK)
    return refuse(c, 503, "out of memory"), WS_ENOMEM;
  if (s->cfg.on_upgrade)
    status = s->cfg.on_upgrade(c, full, &reason, s->cfg.user_data);
  if (c->state == WS__DEAD) {
    rc = WS_ECLOSED;
  } else if (status != 0) {
    refuse(c, status >= 400 && status <= 599 ? status : 500,
           reason ? reason : "refused");
    rc = WS_ECLOSED;
  }
  if (full != c->req) ws__request_free(&s->al, full);
  return rc;
}

/* max_connections reached: the open connections and the places held by
 * upgrades between decide()'s check and their open. */
static int at_cap(const ws_server *s) {
  return s->st.conns_open + s->opening >= s->cfg.max_connections;
}

static int reserve_and_accept(ws_conn *c, const ws__upgrade_check *chk) {
  int err;
  if (c->device_id && (err = ws__registry_reserve_device(c)) != WS_OK)
    return err == WS_EEXIST ? refuse(c, 409, "device_id already connected")
                            : refuse(c, 503, "out of memory");
  return accept_upgrade(c, chk);
}

/* on_upgrade's verdict and the checks after it; the lines the host added
 * there (ws_conn_add_header) go on whichever response this ends with. */
static int decide(ws_conn *c, const ws__reqview *rv,
                  const ws__upgrade_check *chk) {
  ws_server *s = c->s;
  int rc;
  if (ask_host(c, rv) != WS_OK) return WS_ECLOSED;
  /* The cap again: check_origin, select_subprotocol and on_upgrade may
   * have opened others (fed from there) since answer_request checked it. */
  if (at_cap(s)) return refuse(c, 503, "too many connections");
  /* Its place is held until it opens: on_log can still run before that
   * (replacing an older holder of its device id logs "reconnected", a
   * refusal its line), and an upgrade from there saw a place free and
   * opened, this one then opening past the cap. */
  s->opening++;
  rc = reserve_and_accept(c, chk);
  if (!(c->flags & WS__F_OPENED)) s->opening--; /* refused or ended */
  return rc;
}

static size_t headers_max(const ws_server *s) {
  return WS__MIN(s->cfg.max_headers, (size_t)WS__HEADERS_HARD_MAX);
}

/* Builds c->req from rv and answers the request: a plain one by on_http
 * or a refusal; an upgrade by a refusal or, past every check, decide(). */
static int answer_request(ws_conn *c, const ws__reqview *rv) {
  ws_server *s = c->s;
  ws__upgrade_check chk;
  ws__hdrs_window w;
  const char *bad_id;
  int err, ok;

  c->req = ws__request_build(&s->al, rv, 1, &err);
  if (c->req == NULL)
    return err == WS_ENOMEM   ? refuse(c, 503, "out of memory")
           : err == WS_ELIMIT ? refuse(c, 400, "too many query parameters")
                              : refuse(c, 400, "bad percent-encoding");
  ws__upgrade_validate(rv, &chk);
  /* A page request's bad query parameter is left out for on_http (as a web
   * server's query parser would); an upgrade's fails it. */
  if (!chk.is_upgrade) {
    const char *why;
    /* Every request's Host, not only an upgrade's (on_http's too), and
     * its content's framing (RFC 9112 6.3: a Content-Length that is no
     * number is a 400, not a page). */
    int status = ws__check_host(rv, &why);
    if (!status) status = ws__check_framing(rv, &why);
    return status ? refuse(c, status, why) : plain_http(c);
  }
  if (err == WS_EPROTO) return refuse(c, 400, "bad percent-encoding");
  if (!path_matches(s, c->req)) return refuse(c, 404, "not found");
  if (chk.status) return refuse(c, chk.status, chk.reason);
  if (s->shutting_down) return refuse(c, 503, "server shutting down");
  if (at_cap(s)) return refuse(c, 503, "too many connections");
  ok = origin_ok(c, rv);
  if (c->state == WS__DEAD) return WS_ECLOSED; /* check_origin closed it */
  if (!ok) return refuse(c, 403, "origin not allowed");
  if ((bad_id = take_device_id(c)) != NULL) return refuse(c, 400, bad_id);
  err = pick_subprotocol(c, rv);
  if (c->state == WS__DEAD) return WS_ECLOSED; /* select_subprotocol did */
  if (err != WS_OK) {
    if (err == WS_ENOMEM) return refuse(c, 503, "out of memory");
    ws__log(s, WS_LOG_ERROR, "select_subprotocol picked one not offered");
    return refuse(c, 500, "subprotocol not offered");
  }
  if (answering(c)) return decide(c, rv, &chk);
  ws__hdrs_open(c, &w);
  err = decide(c, rv, &chk);
  ws__hdrs_close(s, &w);
  return err;
}

/* answer_request with no response window open. A request processed from
 * inside another's on_upgrade or on_http (the host feeds it there) shuts
 * that one's window for the whole time: lines added to the outer response
 * from this request's callbacks (check_origin, on_log, ...) are WS_ESTATE,
 * as from its on_upgrade or on_http, whose windows would drop them. */
static int run_request(ws_conn *c, const ws__reqview *rv) {
  ws_server *s = c->s;
  ws__hdrs_window w;
  int rc;
  ws__hdrs_shut(s, &w);
  rc = answer_request(c, rv);
  ws__hdrs_close(s, &w);
  return rc;
}

/* Appends to c->buf (bounded by max_handshake). */
static int buffer_bytes(ws_conn *c, const uint8_t *p, size_t n) {
  ws_server *s = c->s;
  size_t need = c->buf_len + n;
  if (need > c->buf_cap) {
    size_t cap = WS__MIN(s->cfg.max_handshake, need < 256 ? 512 : need * 2);
    uint8_t *nb = ws__realloc(&s->al, c->buf, cap);
    if (nb == NULL) return WS_ENOMEM;
    c->buf = nb;
    c->buf_cap = cap;
  }
  memcpy(c->buf + c->buf_len, p, n);
  c->buf_len = need;
  return WS_OK;
}

static void buffer_free(ws_conn *c) {
  ws__free(&c->s->al, c->buf);
  c->buf = NULL;
  c->buf_len = c->buf_cap = 0;
  c->head_lines = 0; /* the field is utf8's once open */
}

/* A request begun but not complete by the deadline gets its 408 (RFC 9110
 * 15.5.9), as Apache and Node answer one; a socket that sent nothing is
 * closed unanswered, as nginx and Go do: it may be a browser's speculative
 * connection, which no response was asked of. The 408 is the connection's
 * first output, so the empty socket buffer takes it at once. A request
 * that is complete (c->req: the deadline passed in a callback of its own
 * processing, which a tick from there fires) is no 408's: it ends
 * unanswered, and the processing on the stack, which reads the buffered
 * head, sees it ended. On_log may have ended it at the deadline's line. */
void ws__upgrade_expired(ws_conn *c) {
  if (c->state != WS__HANDSHAKE) return; /* on_log closed it */
  if (c->buf_len == 0 || c->req != NULL) {
    ws__conn_finish(c, WS_CLOSE_ABNORMAL, "handshake timeout");
    return;
  }
  buffer_free(c);
  refuse(c, 408, "request timeout");
}

/* Where the last parse of c->buf[0..old) left off (c->head_lines), for
 * the next one to start there: the lines it took end at the last LF of
 * those bytes (bytes appended since hold no LF, or they would have been
 * parsed). Found from the end: the part of a line it reads is re-read by
 * the parse anyway. */
static ws__http_mark head_mark(const ws_conn *c, size_t old) {
  ws__http_mark m = {0, 0};
  if (c->head_lines == 0) return m;
  m.count = c->head_lines - 1;
  for (m.from = old; c->buf[m.from - 1] != '\n'; m.from--) {}
  return m;
}

/* Runs the parser from *m (moved on INCOMPLETE, and the lines taken noted
 * in c->head_lines); answers malformed and oversized heads. Returns the
 * parser's result. */
static int parse_head(ws_conn *c, const char *src, size_t len,
                      ws__http_mark *m, ws_header *hdrs, ws__reqview *rv,
                      size_t *used) {
  ws_server *s = c->s;
  size_t lead = ws__empty_lines_len(src, len), max = s->cfg.max_handshake;
  int r = ws__http_parse_resume(src, WS__MIN(len, max), m, hdrs,
                                headers_max(s), rv, used);
  if (r == WS__HTTP_INCOMPLETE)
    c->head_lines = m->from ? (uint32_t)m->count + 1 : 0;
  /* The method as the parser read it (it is kept when a later byte fails
   * the request): the answer to HEAD has no content, a refusal of a HEAD
   * request that is malformed further on included. */
  if (rv->method_len == 4 && memcmp(rv->method, "HEAD ", 5) == 0)
    c->marks |= WS__M_HEAD;
  if (r == WS__HTTP_INVALID) refuse(c, 400, "malformed HTTP request");
  if (r == WS__HTTP_TOO_MANY) refuse(c, 431, "too many headers");
  if (r == WS__HTTP_INCOMPLETE && len >= max) {
    /* No line ended after the empty ones: the request line alone, its
     * target really, is over the limit, which RFC 9112 3 answers with 414. */
    if (lead >= max || memchr(src + lead, '\n', max - lead) == NULL)
      refuse(c, 414, "request line too long");
    else
      refuse(c, 431, "request head too large");
    r = WS__HTTP_TOO_MANY;
  }
  return r;
}

/* A line end or a control byte (CR and LF included; a CR is a line end's
 * start or a 400): reason to parse again. */
static int line_ended_or_bad(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7F) return 1;
  return 0;
}

/* Parses from p directly when nothing is buffered (the common case: the
 * whole head in one read); otherwise appends to c->buf and parses again
 * only when a line ended, and then only from the lines parsed before (a
 * re-read of the whole buffer per line cost O(lines x bytes): 16 M
 * instructions for an 8 KiB head of 64 lines sent a byte at a time, 59 M
 * with 256 headers, where one read costs 0.6 M). Returns bytes of p
 * consumed by the request, or -1 when the connection was refused or
 * ended. */
long ws__upgrade_feed(ws_conn *c, const uint8_t *p, size_t n) {
  ws_header hdrs[WS__HEADERS_HARD_MAX];
  ws__reqview rv;
  ws__http_mark m = {0, 0};
  size_t used = 0, old = c->buf_len;
  int r;

  if (n == 0) return 0; /* nothing to parse; p may be NULL */
  if (old == 0) {
    r = parse_head(c, (const char *)p, n, &m, hdrs, &rv, &used);
    if (r == WS__HTTP_COMPLETE) {
      run_request(c, &rv);
      return (long)used;
    }
    if (r != WS__HTTP_INCOMPLETE) return -1;
  } else {
    size_t take = WS__MIN(n, c->s->cfg.max_handshake - old);
    if (buffer_bytes(c, p, take) != WS_OK) goto nomem;
    /* Parsed again when a line ended or a CR came, when a byte came that
     * no head may hold (a control byte: 400 now, as when the same bytes
     * come in one feed, not at the deadline), or when the limit is reached
     * (431 then, unless a malformed byte came first). A byte wrong only
     * where it is (a space in a header name) is found when its line ends.
     * The request line (and the empty ones before it, at most
     * WS__HTTP_EMPTY_LINES_MAX) is read again until it is complete, the
     * other lines only until they are. */
    if (!line_ended_or_bad(p, take) && c->buf_len < c->s->cfg.max_handshake)
      return (long)n;
    m = head_mark(c, old);
    r = parse_head(c, (const char *)c->buf, c->buf_len, &m, hdrs, &rv,
                   &used);
    if (r == WS__HTTP_COMPLETE) {
      run_request(c, &rv);
      buffer_free(c);
      return (long)(used - old);
    }
    if (r != WS__HTTP_INCOMPLETE) return -1;
    return (long)n;
  }
  if (buffer_bytes(c, p, n) != WS_OK) goto nomem;
  return (long)n;
nomem:
  ws__conn_finish(c, WS_CLOSE_ABNORMAL, "out of memory");
  return -1;
}

/* Every header the host hands in is read as pointer + length: one with
 * no bytes where it claims some is the host's error, not a request's. */
static int headers_valid(const ws_header *headers, size_t header_count) {
  size_t i;
  if (headers == NULL) return header_count == 0;
  for (i = 0; i < header_count; i++)
    if ((headers[i].name == NULL && headers[i].name_len) ||
        (headers[i].value == NULL && headers[i].value_len))
      return 0;
  return 1;
}

static int check_args(ws_conn *c, const char *method, const char *path,
                      const ws_header *headers, size_t header_count) {
  if (c == NULL || method == NULL || path == NULL ||
      !headers_valid(headers, header_count))
    return WS_EINVAL;
  if (c->state != WS__HANDSHAKE || c->buf_len || c->req ||
      (c->marks & WS__M_FEEDING)) /* from a callback of its own upgrade */
    return WS_ESTATE;
  /* A new one, but the server is being destroyed: see ws_conn_feed. */
  return c->s->destroying ? WS_ECLOSED : WS_OK;
}

/* a + b, or SIZE_MAX past it: a host's lengths (values may share bytes)
 * can add up past a 32-bit size_t. */
static size_t add_sat(size_t a, size_t b) {
  return b > SIZE_MAX - a ? SIZE_MAX : a + b;
}

/* A request the host parsed meets the limits the parser enforces on fed
 * bytes: header count, and the head's size in its shortest wire form
 * ("GET /p?q HTTP/1.1", "Name:value" lines, bare LF line ends, which the
 * parser accepts). Else 431 (414 for the request line alone), as when
 * fed. Header values lose the optional
 * whitespace around them, as the parser drops it (RFC 9110 5.5), which a
 * host's parser may have kept ("Sec-WebSocket-Version: 13" split after
 * the colon); a header the parser would refuse (a name not a token, a
 * value with CR or LF, which a chosen subprotocol would carry into the
 * 101) is a 400 as from the parser. So is a request line the parser
 * would refuse: a method that is not a token, a path that is no request
 * target's (ws__target_path), a path or query with a byte no target holds
 * (ws__target_bytes_ok), checked first as the parser reads the request
 * line first; an absolute-form path ("http://host/ws") is read as the
 * parser reads it. A feed from a callback of this upgrade is refused
 * as within a feed (WS__M_FEEDING). */
static void run_parsed(ws_conn *c, const ws__reqview *rv) {
  const ws_server *s = c->s;
  ws_header hdrs[WS__HEADERS_HARD_MAX];
  ws__reqview trimmed = *rv;
  size_t i, line, n = add_sat(rv->method_len, rv->path_len + 11);
  if (rv->query) n = add_sat(n, 1 + rv->query_len);
  line = n; /* "M P?Q HTTP/1.1\n" */
  n = add_sat(n, 1); /* the empty line */
  for (i = 0; i < rv->header_count; i++)
    n = add_sat(add_sat(n, rv->headers[i].name_len + 1),
                rv->headers[i].value_len + 1);
  c->marks |= WS__M_FEEDING;
  if (strcmp(rv->method, "HEAD") == 0) c->marks |= WS__M_HEAD;
  /* The request line as the parser reads it: else a method "GET X" or a
   * path "/a\r\nX: y", which the same bytes fed never get past, reached
   * on_http (and ws_request_method, ws_request_path) as they were. */
  if (!ws__is_token(rv->method) ||
      ws__target_path(&trimmed, rv->path, rv->path_len) != 0 ||
      !ws__target_bytes_ok(rv->path, rv->path_len) ||
      (rv->query && !ws__target_bytes_ok(rv->query, rv->query_len))) {
    refuse(c, 400, "malformed HTTP request");
  } else if (rv->header_count > headers_max(s)) {
    refuse(c, 431, "too many headers");
  } else if (line > s->cfg.max_handshake) {
    refuse(c, 414, "request line too long");
  } else if (n > s->cfg.max_handshake) {
    refuse(c, 431, "request head too large");
  } else {
    for (i = 0; i < rv->header_count; i++) {
      if (!ws__header_well_formed(&rv->headers[i])) break;
      hdrs[i] = rv->headers[i];
      hdrs[i].value_len = ws__trim_ows(&hdrs[i].value, hdrs[i].value_len);
    }
    trimmed.headers = hdrs;
    if (i < rv->header_count)
      refuse(c, 400, "malformed HTTP request");
    else
      run_request(c, &trimmed);
  }
  c->marks &= (uint8_t)~WS__M_FEEDING;
}

static void fill_view(ws__reqview *rv, const char *method, const char *path,
                      const char *query, const ws_header *headers,
                      size_t header_count) {
  memset(rv, 0, sizeof(*rv));
  rv->method = method;
  rv->method_len = strlen(method);
  rv->path = path;
  rv->path_len = strlen(path);
  rv->query = query;
  rv->query_len = query ? strlen(query) : 0;
  rv->http_minor = 1;
  rv->headers = headers;
  rv->header_count = header_count;
}

int ws_conn_upgrade_answer(ws_conn *c, const char *method, const char *path,
                           const char *query, const ws_header *headers,
                           size_t header_count, int *status,
                           const char **reason,
                           char accept[WS_ACCEPT_LEN + 1]) {
  struct ws__answer ans, *outer;
  ws_server *s;
  ws__reqview rv;
  int err = check_args(c, method, path, headers, header_count);
  if (err == WS_OK && (status == NULL || reason == NULL || accept == NULL))
    err = WS_EINVAL;
  if (err != WS_OK) return err;
  s = c->s;
  memset(&ans, 0, sizeof(ans));
  ans.c = c;
  ans.status = 0; /* set by the 101 or a refusal, else see below */
  ans.reason = NULL;
  fill_view(&rv, method, path, query, headers, header_count);
  outer = s->answer; /* an on_upgrade may answer another connection */
  s->answer = &ans;
  ws__enter(s);
  run_parsed(c, &rv);
  /* Flushed now, as the outermost ws__leave would, so that a close it
   * causes is in the answer: what on_open queued meets the send callback
   * (0 until the host's 101 is out) and want_write, and either may end c
   * (fuzz_api: a 101 answered for a connection want_write had aborted). */
  if (s->depth == 1) ws__flush_dirty(s);
  if (ans.status == 101 && c->state == WS__DEAD) { /* on_open ended it */
    ans.status = 503;
    ans.reason = "connection closed during on_open";
  } else if (ans.status == 0) { /* a callback (on_log, check_origin...) */
    ans.status = 503;           /* ended it before any answer */
    ans.reason = "connection closed during the upgrade";
  }
  s->answer = outer;
  ws__leave(s); /* may free s (ws_server_free from a callback): not used */
  *status = ans.status;
  *reason = ans.status == 101 ? NULL : ans.reason;
  if (ans.status == 101)
    memcpy(accept, ans.accept, sizeof(ans.accept));
  else
    accept[0] = '\0';
  return WS_OK;
}

int ws_conn_upgrade(ws_conn *c, const char *method, const char *path,
                    const char *query, const ws_header *headers,
                    size_t header_count) {
  ws__reqview rv;
  int err = check_args(c, method, path, headers, header_count);
  if (err != WS_OK) return err;
  fill_view(&rv, method, path, query, headers, header_count);
  ws__enter(c->s);
  run_parsed(c, &rv);
  ws__leave(c->s);
  return WS_OK;
}
