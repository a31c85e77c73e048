/*
 * ws_request: the upgrade request's facts, kept for the connection's life.
 *
 * One allocation, so keeping a request costs one malloc and freeing it
 * cannot leak parts:
 *   struct ws_request   sizes and the offsets of method and path
 *   pairs[]             (name, value) offsets: query params, then headers
 *   strings             NUL-terminated, in the same order
 * Offsets rather than pointers keep the block position-independent and
 * make the layout easy to check in a debugger.
 */
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "proto.h"

/* 32-bit offsets: a request kept for a connection's whole life is small
 * (block_size refuses blocks past 4 GiB), and every byte here is paid per
 * open connection. */
typedef uint32_t roff;

struct ws_request {
  roff size;     /* bytes of the whole block */
  roff nquery;   /* query (name, value) pairs */
  roff nheaders; /* header (name, value) pairs */
  roff method;   /* offsets from the start of the block */
  roff path;
  roff pairs[];  /* 2 * (nquery + nheaders) offsets */
};

static const char *str_at(const ws_request *r, size_t off) {
  return (const char *)r + off;
}

/* ---- sizing ------------------------------------------------------------ */

/* size_t addition that reports overflow, so a host-supplied request with
 * absurd lengths (ws_conn_upgrade) fails with WS_ENOMEM, never wraps. */
static int add_size(size_t *acc, size_t n) {
  if (n > SIZE_MAX - *acc) return -1;
  *acc += n;
  return 0;
}

/* Calls fn for each non-empty '&'-separated segment of the query. */
typedef int (*segment_fn)(const char *seg, size_t len, void *ctx);

static int for_each_segment(const char *q, size_t n, segment_fn fn,
                            void *ctx) {
  size_t i = 0;
  while (i < n) {
    size_t start = i;
    while (i < n && q[i] != '&') i++;
    if (i > start) {
      int rc = fn(q + start, i - start, ctx);
      if (rc != 0) return rc;
    }
    i++; /* skip the '&' */
  }
  return 0;
}

static int count_segment(const char *seg, size_t len, void *ctx) {
  (void)seg;
  (void)len;
  (*(size_t *)ctx)++;
  return 0;
}

/* Upper bound of the block size: percent-decoding only shrinks strings,
 * so raw lengths are enough and no decoding pass is needed to size. */
static int block_size(const ws__reqview *rv, size_t nquery, size_t nheaders,
                      size_t *out) {
  size_t n = sizeof(struct ws_request), npairs = nquery + nheaders;
  int bad = npairs > UINT32_MAX / (2 * sizeof(roff));
  bad = bad || add_size(&n, npairs * 2 * sizeof(roff));
  bad = bad || add_size(&n, rv->method_len) || add_size(&n, 1);
  bad = bad || add_size(&n, rv->path_len) || add_size(&n, 1);
  /* Each pair adds at most two NULs and drops at least one '&'/'='. */
  bad = bad || add_size(&n, rv->query_len) || add_size(&n, 2 * nquery);
  for (size_t i = 0; i < nheaders && !bad; i++) {
    bad = add_size(&n, rv->headers[i].name_len) ||
          add_size(&n, rv->headers[i].value_len) || add_size(&n, 2);
  }
  *out = n;
  return bad || n > UINT32_MAX ? -1 : 0;
}

/* ---- filling ----------------------------------------------------------- */

typedef struct builder {
  ws_request *r;
  size_t pos;     /* next free byte in the block */
  size_t pair;    /* next free entry of pairs[] */
  int bad_query;  /* a query parameter had a bad escape (see put_param) */
} builder;

static char *block(builder *b) { return (char *)b->r; }

/* Appends src[0..n) and a NUL; returns its offset. */
static roff put_raw(builder *b, const char *src, size_t n) {
  roff off = (roff)b->pos;
  if (n > 0) memcpy(block(b) + off, src, n);
  block(b)[off + n] = '\0';
  b->pos += n + 1;
  return off;
}

/* Appends the percent-decoding of src[0..n) and a NUL. Returns its offset
 * through *off, or -1 on a bad escape. */
static int put_decoded(builder *b, const char *src, size_t n, int plus,
                       roff *off) {
  long d = n > 0 ? ws__url_decode(block(b) + b->pos, src, n, plus) : 0;
  if (d < 0) return -1;
  *off = (roff)b->pos;
  block(b)[b->pos + (size_t)d] = '\0';
  b->pos += (size_t)d + 1;
  return 0;
}

/* One "name[=value]" segment; a missing '=' gives the value "". A bad
 * escape is noted: in the name, the segment is left out (its bytes and
 * slot taken back); in the value, the name is kept with NO_VALUE, so that
 * it reads as absent rather than letting a later one of the same name
 * pass for the first. */
#define NO_VALUE 0 /* offset 0 is the struct itself, never a string */
static int put_param(const char *seg, size_t len, void *ctx) {
  builder *b = ctx;
  const char *eq = memchr(seg, '=', len);
  size_t name_len = eq ? (size_t)(eq - seg) : len, start = b->pos;
  roff *slot = &b->r->pairs[2 * b->pair];
  if (put_decoded(b, seg, name_len, 1, &slot[0]) != 0) {
    b->pos = start;
    b->bad_query = 1;
    return 0;
  }
  b->pair++;
  if (!eq) {
    slot[1] = put_raw(b, "", 0);
  } else if (put_decoded(b, eq + 1, len - name_len - 1, 1, &slot[1]) != 0) {
    slot[1] = NO_VALUE;
    b->bad_query = 1;
  }
  return 0;
}

static int fill(builder *b, const ws__reqview *rv) {
  ws_request *r = b->r;
  r->method = put_raw(b, rv->method, rv->method_len);
  if (put_decoded(b, rv->path, rv->path_len, 0, &r->path) != 0) return -1;
  for_each_segment(rv->query, rv->query_len, put_param, b);
  r->nquery = (roff)b->pair; /* the headers' pairs follow the kept ones */
  for (size_t i = 0; i < r->nheaders; i++) {
    const ws_header *h = &rv->headers[i];
    roff *slot = &r->pairs[2 * b->pair++];
    slot[0] = put_raw(b, h->name, h->name_len);
    slot[1] = put_raw(b, h->value, h->value_len);
  }
  return 0;
}

ws_request *ws__request_build(const struct ws__alloc *a, const ws__reqview *rv,
                              int with_headers, int *err) {
  size_t nquery = 0, nheaders = with_headers ? rv->header_count : 0, size;
  for_each_segment(rv->query, rv->query_len, count_segment, &nquery);
  if (nquery > WS_MAX_QUERY_PARAMS) {
    *err = WS_ELIMIT;
    return NULL;
  }
  if (block_size(rv, nquery, nheaders, &size) != 0) {
    *err = WS_ENOMEM;
    return NULL;
  }
  ws_request *r = ws__malloc(a, size);
  if (r == NULL) {
    *err = WS_ENOMEM;
    return NULL;
  }
  r->size = (roff)size;
  r->nquery = (roff)nquery;
  r->nheaders = (roff)nheaders;
  builder b = {.r = r,
               .pos = sizeof *r + 2 * (nquery + nheaders) * sizeof(roff),
               .pair = 0, .bad_query = 0};
  if (fill(&b, rv) != 0) {
    ws__free(a, r);
    *err = WS_EPROTO;
    return NULL;
  }
  *err = b.bad_query ? WS_EPROTO : WS_OK;
  return r;
}

void ws__request_free(const struct ws__alloc *a, ws_request *r) {
  ws__free(a, r);
}

size_t ws__request_size(const ws_request *r) { return r ? r->size : 0; }

/* ---- public accessors -------------------------------------------------- */

const char *ws_request_method(const ws_request *r) {
  return r ? str_at(r, r->method) : NULL;
}

const char *ws_request_path(const ws_request *r) {
  return r ? str_at(r, r->path) : NULL;
}

const char *ws_request_query(const ws_request *r, const char *name) {
  if (!r || !name) return NULL;
  for (size_t i = 0; i < r->nquery; i++)
    if (strcmp(str_at(r, r->pairs[2 * i]), name) == 0)
      return r->pairs[2 * i + 1] == NO_VALUE
                 ? NULL
                 : str_at(r, r->pairs[2 * i + 1]);
  return NULL;
}

const char *ws_request_header(const ws_request *r, const char *name) {
  if (!r || !name) return NULL;
  size_t name_len = strlen(name);
  const roff *h = r->pairs + 2 * r->nquery;
  for (size_t i = 0; i < r->nheaders; i++) {
    const char *hn = str_at(r, h[2 * i]);
    if (ws__ascii_caseeq(hn, strlen(hn), name, name_len))
      return str_at(r, h[2 * i + 1]);
  }
  return NULL;
}

size_t ws_request_header_count(const ws_request *r) {
  return r ? r->nheaders : 0;
}

int ws_request_header_at(const ws_request *r, size_t i, const char **name,
                         const char **value) {
  if (!r) return WS_EINVAL;
  if (i >= r->nheaders) return WS_ENOENT;
  const roff *h = r->pairs + 2 * (r->nquery + i);
  if (name) *name = str_at(r, h[0]);
  if (value) *value = str_at(r, h[1]);
  return WS_OK;
}
