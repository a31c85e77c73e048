/*
 * A JSON syntax check (RFC 8259) that allocates nothing, for what is sent
 * (the _json variants' ready text, a printed cJSON tree) and, as the
 * envelope scan, for what is received: checked once per call (not per
 * receiver) so no receiver can get a malformed envelope, without building
 * a cJSON tree just to throw it away. Nesting is bounded: at most 128
 * arrays and objects open at once, a received envelope included.
 */
#include <string.h>

#include "internal.h"

#define JSON_MAX_DEPTH 128

/* ws__json_plain: 0 for the control characters (0x00-0x1f), '"' (0x22)
 * and '\\' (0x5c), 1 for every other byte. */
const unsigned char ws__json_plain_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
};

typedef struct jcur {
  const char *p, *end;
} jcur;

static int value(jcur *j, int depth);

/* j->p is read and written through a pointer that a char access could
 * alias, so the hot loops work on a local copy and store it back once. */
static void skip_ws(jcur *j) {
  const char *p = j->p, *end = j->end;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  j->p = p;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int literal(jcur *j, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return 0;
  j->p += n;
  return 1;
}

static int digits(jcur *j) {
  const char *p = j->p, *end = j->end, *start = p;
  while (p < end && is_digit(*p)) p++;
  j->p = p;
  return p > start;
}

static int number(jcur *j) {
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p < j->end && *j->p == '0')
    j->p++;
  else if (!digits(j))
    return 0;
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (!digits(j)) return 0;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (!digits(j)) return 0;
  }
  return 1;
}

/* Four hex digits known to be there, as a number. */
static int hex4(const char *p, uint32_t *out) {
  uint32_t v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    char c = p[i];
    v = v * 16 + (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  *out = v;
  return 1;
}

static int hex4_at(const char *p, const char *end, uint32_t *cp) {
  int i;
  if (end - p < 4) return 0;
  for (i = 0; i < 4; i++)
    if (!is_hex(p[i])) return 0;
  return hex4(p, cp);
}

/* The rest of a \u escape at p (after the 'u'); the end of it, or NULL.
 * A surrogate must come as a high-low pair: cJSON, which builds the trees
 * handlers read, refuses a lone one, and a text valid here must parse
 * there (RFC 8259 8.2 leaves lone surrogates unpredictable). */
static const char *escape_u(const char *p, const char *end) {
  uint32_t cp, lo;
  if (!hex4_at(p, end, &cp)) return NULL;
  p += 4;
  if (cp >= 0xDC00 && cp <= 0xDFFF) return NULL;
  if (cp < 0xD800 || cp > 0xDBFF) return p;
  if (end - p < 2 || p[0] != '\\' || p[1] != 'u' || !hex4_at(p + 2, end, &lo))
    return NULL;
  return lo >= 0xDC00 && lo <= 0xDFFF ? p + 6 : NULL;
}

/* UTF-8 validity of the whole text is checked by the caller. */
static int string(jcur *j) {
  const char *p = j->p + 1, *end = j->end; /* after the opening quote */
  for (;;) {
    unsigned char c;
    while (p < end && ws__json_plain((unsigned char)*p)) p++;
    if (p >= end) return 0;
    c = (unsigned char)*p++;
    if (c == '"') break;
    if (c != '\\' || p >= end) return 0; /* a control character */
    c = (unsigned char)*p++;
    if (c == 'u') {
      if ((p = escape_u(p, end)) == NULL) return 0;
    } else if (c == '\0' || !strchr("\"\\/bfnrt", c)) {
      return 0;
    }
  }
  j->p = p;
  return 1;
}

/* '[' value (',' value)* ']' or '{' string ':' value (',' ...)* '}' */
static int container(jcur *j, int depth, char close, int keyed) {
  j->p++;
  skip_ws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return 1;
  }
  for (;;) {
    if (keyed) {
      if (j->p >= j->end || *j->p != '"' || !string(j)) return 0;
      skip_ws(j);
      if (j->p >= j->end || *j->p++ != ':') return 0;
    }
    if (!value(j, depth + 1)) return 0;
    skip_ws(j);
    if (j->p >= j->end) return 0;
    if (*j->p == close) {
      j->p++;
      return 1;
    }
    if (*j->p++ != ',') return 0;
    skip_ws(j);
  }
}

/* depth: the arrays and objects open around this value. The limit counts
 * containers, not values: an innermost empty one is a level too. */
static int value(jcur *j, int depth) {
  skip_ws(j);
  if (j->p >= j->end) return 0;
  switch (*j->p) {
  case '{': return depth < JSON_MAX_DEPTH && container(j, depth, '}', 1);
  case '[': return depth < JSON_MAX_DEPTH && container(j, depth, ']', 0);
  case '"': return string(j);
  case 't': return literal(j, "true");
  case 'f': return literal(j, "false");
  case 'n': return literal(j, "null");
  default: return number(j);
  }
}

int ws__json_valid(const char *text, size_t len, int outer) {
  jcur j;
  if (ws__utf8_validate(0, (const uint8_t *)text, len) != WS__UTF8_ACCEPT)
    return 0;
  j.p = text;
  j.end = text + len;
  if (!value(&j, outer)) return 0;
  skip_ws(&j);
  return j.p == j.end;
}

/* ---- the envelope, scanned without building a tree ------------------- */

static long unescape_one(const char *raw, size_t *i);
static size_t utf8_put(char *o, uint32_t cp);

/* How a raw key (between the quotes) reads as name, escapes decoded:
 * "\u0061ction" is "action" (KEY_IS). cJSON finds a member with strcmp,
 * which stops at a NUL, so there a key that decodes to name, a NUL, then
 * anything ("action\u0000", "data\u0000x") is name's member too: KEY_NUL,
 * told apart so that the caller can refuse it. */
enum { KEY_OTHER = 0, KEY_IS, KEY_NUL };
static int key_is(const char *k, size_t n, const char *name) {
  size_t nl = strlen(name), i = 0, o = 0;
  if (memchr(k, '\\', n) == NULL)
    return nl == n && memcmp(k, name, n) == 0 ? KEY_IS : KEY_OTHER;
  while (i < n) {
    char enc[4];
    size_t m;
    long cp;
    if (k[i] != '\\') {
      if (o >= nl || k[i] != name[o]) return KEY_OTHER;
      o++, i++;
      continue;
    }
    i++;
    if ((cp = unescape_one(k, &i)) == 0) /* where cJSON's compare ends */
      return o == nl ? KEY_NUL : KEY_OTHER;
    m = utf8_put(enc, (uint32_t)cp);
    if (m > nl - o || memcmp(enc, name + o, m) != 0) return KEY_OTHER;
    o += m;
  }
  return o == nl ? KEY_IS : KEY_OTHER;
}

/* Walks the top-level object once: validates everything, notes the first
 * "action" and "data" members as cJSON's lookup finds them (a key read
 * up to a NUL included), so that a host parsing the same text with cJSON
 * reads the same members. An "action" found only that way is marked
 * (action_nul_key): the action is then refused, as one whose value holds
 * a NUL is, rather than taken from a later "action" that cJSON would not
 * see. */
static int scan_members(jcur *j, ws__env_scan *out) {
  j->p++;
  skip_ws(j);
  if (j->p < j->end && *j->p == '}') return j->p++, 1;
  for (;;) {
    const char *k, *v;
    size_t kn;
    int key;
    if (j->p >= j->end || *j->p != '"') return 0;
    k = j->p + 1;
    if (!string(j)) return 0;
    kn = (size_t)(j->p - 1 - k);
    skip_ws(j);
    if (j->p >= j->end || *j->p++ != ':') return 0;
    skip_ws(j);
    v = j->p;
    if (!value(j, 1)) return 0;
    if (!out->action && (key = key_is(k, kn, "action")) != KEY_OTHER) {
      out->action = v;
      out->action_len = (size_t)(j->p - v);
      out->action_nul_key = key == KEY_NUL;
    } else if (!out->data && key_is(k, kn, "data") != KEY_OTHER) {
      out->data = v;
      out->data_len = (size_t)(j->p - v);
    }
    skip_ws(j);
    if (j->p >= j->end) return 0;
    if (*j->p == '}') return j->p++, 1;
    if (*j->p++ != ',') return 0;
    skip_ws(j);
  }
}

/* The shape nearly every client sends (JSON.stringify, cJSON, Go's
 * encoding/json): {"action":"name"} or {"action":"name","data":<value>},
 * no whitespace around the envelope's own tokens, a name without escapes.
 * Matched with two memcmps and one value scan instead of the member loop.
 * Returns 1 only when the whole text is exactly that, and only then
 * writes out (what the member loop would give); 0 leaves the text to the
 * member loop, which decides everything else (and every error). */
static int scan_canonical(const char *text, size_t len, ws__env_scan *out) {
  static const char head[] = "{\"action\":\"", data[] = ",\"data\":";
  const char *action, *p, *end = text + len, *v;
  size_t action_len;
  jcur j;
  if (len < sizeof(head) || memcmp(text, head, sizeof(head) - 1) != 0)
    return 0;
  action = text + sizeof(head) - 2; /* its opening quote */
  p = action + 1;
  while (p < end && ws__json_plain((unsigned char)*p)) p++;
  if (p >= end || *p++ != '"') return 0;
  action_len = (size_t)(p - action);
  if (p + 1 == end && *p == '}') {
    out->action = action;
    out->action_len = action_len;
    out->action_plain = 1;
    return 1;
  }
  if ((size_t)(end - p) < sizeof(data) - 1 ||
      memcmp(p, data, sizeof(data) - 1) != 0)
    return 0;
  j.p = v = p + sizeof(data) - 1;
  j.end = end;
  skip_ws(&j);
  if (j.p != v || !value(&j, 1)) return 0; /* spaces: the member loop */
  if (j.p + 1 != end || *j.p != '}') return 0;
  out->action = action;
  out->action_len = action_len;
  out->action_plain = 1;
  out->data = v;
  out->data_len = (size_t)(j.p - v);
  return 1;
}

int ws__envelope_scan(const char *text, size_t len, ws__env_scan *out) {
  jcur j;
  int is_object;
  memset(out, 0, sizeof(*out));
  if (scan_canonical(text, len, out)) return WS__ENV_OK;
  j.p = text; /* UTF-8 was checked by frame.c as the bytes arrived */
  j.end = text + len;
  skip_ws(&j);
  is_object = j.p < j.end && *j.p == '{';
  if (is_object ? !scan_members(&j, out) : !value(&j, 0))
    return WS__ENV_INVALID_JSON;
  skip_ws(&j);
  if (j.p != j.end) return WS__ENV_INVALID_JSON;
  if (!is_object) return WS__ENV_NOT_OBJECT;
  return WS__ENV_OK;
}

/* ---- string unescaping (for actions) --------------------------------- */

static size_t utf8_put(char *o, uint32_t cp) {
  if (cp < 0x80) return o[0] = (char)cp, 1;
  if (cp < 0x800)
    return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | ((cp >> 6) & 63));
    o[2] = (char)(0x80 | (cp & 63));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | ((cp >> 12) & 63));
  o[2] = (char)(0x80 | ((cp >> 6) & 63));
  o[3] = (char)(0x80 | (cp & 63));
  return 4;
}

/* The escape at raw[*i] (after the backslash) as a code point. The text was
 * validated by ws__envelope_scan, so escapes are well formed and
 * surrogates come in pairs (escape_u). */
static long unescape_one(const char *raw, size_t *i) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  char e = raw[(*i)++];
  uint32_t cp, lo;
  if (e != 'u') return to[strchr(from, e) - from];
  hex4(raw + *i, &cp);
  *i += 4;
  if (cp < 0xD800 || cp > 0xDBFF) return (long)cp;
  hex4(raw + *i + 2, &lo);
  *i += 6;
  /* A high and a low surrogate (escape_u): at most 0x10FFFF, no loss.
   * NOLINTNEXTLINE(bugprone-misplaced-widening-cast) */
  return (long)(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
}

long ws__json_unescape(const char *raw, size_t n, char *out, size_t cap) {
  size_t i = 0, o = 0;
  if (memchr(raw, '\\', n) == NULL) { /* the common case: nothing to decode */
    if (n > cap) return -1;
    memcpy(out, raw, n);
    return (long)n;
  }
  while (i < n) {
    char enc[4];
    size_t k;
    long cp;
    if (raw[i] != '\\') {
      if (o >= cap) return -1;
      out[o++] = raw[i++];
      continue;
    }
    i++;
    cp = unescape_one(raw, &i);
    if (cp <= 0) return -1; /* NUL */
    k = utf8_put(enc, (uint32_t)cp);
    if (o + k > cap) return -1;
    memcpy(out + o, enc, k);
    o += k;
  }
  return (long)o;
}
