/*
 * Who is connected: the device index (device id -> connection, O(1)) and
 * named groups (uthash), both hashed with the server's keyed ws__hash. A
 * user is a group of kind 'u'; rooms are groups of kind 'g'; one mechanism
 * serves both. A connection lists its memberships, so closing it leaves
 * every index in O(its memberships).
 *
 * Duplicate device ids (the model's bug: the newer entry silently
 * overwrote the older, whose close then deleted the newer's entry): by
 * default the newer wins and the older is closed with 4000; the older is
 * unindexed first, so its close never touches the newer's entry.
 */
#include <string.h>

#include "internal.h"

#define WS__GROUP_NAME_MAX 255

/* ---- the device index ------------------------------------------------
 * An open-addressing table of connection pointers with linear probing and
 * backward-shift deletion (no tombstones): 8 bytes per slot at most 50%
 * load, instead of a 56-byte hash handle in every connection. */

/* Keyed: ids are the peers' choice (see ws__hash). */
static uint32_t dev_hash(const ws_server *s, const char *id) {
  return ws__hash(s, id, strlen(id));
}

/* The slot holding id, or the empty slot where it would go. */
static uint32_t dev_slot(const ws_server *s, const char *id) {
  uint32_t mask = s->dev_cap - 1, i = dev_hash(s, id) & mask;
  while (s->dev_slots[i] && strcmp(s->dev_slots[i]->device_id, id) != 0)
    i = (i + 1) & mask;
  return i;
}

#define WS__DEV_MIN_CAP 64u

/* Rehashes into ncap slots (a power of two above dev_count). */
static int dev_resize(ws_server *s, uint32_t ncap) {
  uint32_t i, ocap = s->dev_cap;
  ws_conn **old = s->dev_slots;
  ws_conn **ns = ws__malloc(&s->al, ncap * sizeof(*ns));
  if (ns == NULL) return WS_ENOMEM;
  memset(ns, 0, ncap * sizeof(*ns));
  s->dev_slots = ns;
  s->dev_cap = ncap;
  for (i = 0; i < ocap; i++)
    if (old[i]) ns[dev_slot(s, old[i]->device_id)] = old[i];
  ws__free(&s->al, old);
  return WS_OK;
}

static int dev_grow(ws_server *s) {
  return dev_resize(s, s->dev_cap ? s->dev_cap * 2 : WS__DEV_MIN_CAP);
}

/* A table that grew for a crowd gives its memory back as the crowd
 * leaves: halved below 1/8 load (1/4 after), so a count going up and down
 * around one size never resizes on every step. Out of memory, the larger
 * table simply stays. */
static void dev_shrink_if_sparse(ws_server *s) {
  if (s->dev_cap > WS__DEV_MIN_CAP && (uint64_t)s->dev_count * 8 < s->dev_cap)
    (void)dev_resize(s, s->dev_cap / 2);
}

static void dev_remove(ws_server *s, uint32_t i) {
  uint32_t mask = s->dev_cap - 1, j = i;
  s->dev_slots[i] = NULL;
  s->dev_count--;
  /* Pull later entries of the probe run back over the hole when their home
   * slot is not between the hole and themselves. */
  for (;;) {
    uint32_t home;
    j = (j + 1) & mask;
    if (s->dev_slots[j] == NULL) return;
    home = dev_hash(s, s->dev_slots[j]->device_id) & mask;
    if (((j - home) & mask) >= ((j - i) & mask)) {
      s->dev_slots[i] = s->dev_slots[j];
      s->dev_slots[j] = NULL;
      i = j;
    }
  }
}

/* Two users' names, NULL for none. */
static int same_user(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

int ws__registry_reserve_device(ws_conn *c) {
  ws_server *s = c->s;
  ws_conn *old;
  if ((s->dev_count + 1) * 2 > s->dev_cap && dev_grow(s) != WS_OK)
    return WS_ENOMEM;
  old = s->dev_slots[dev_slot(s, c->device_id)];
  if (old == NULL || old->state == WS__DEAD) return WS_OK;
  /* Another user's id stays theirs while its connection closes too: else
   * a client could take it in that window and lock the owner out. */
  if (s->cfg.duplicate_policy == WS_DUP_REPLACE_SAME_USER)
    return same_user(ws_conn_user(old), ws_conn_user(c)) ? WS_OK : WS_EEXIST;
  /* One already closing (a client reconnecting after its close) is on its
   * way out: the newer takes its place. */
  if (old->state != WS__OPEN) return WS_OK;
  return s->cfg.duplicate_policy == WS_DUP_REFUSE ? WS_EEXIST : WS_OK;
}

/* An older connection still open takes its id back when on_log ended the
 * newer one (whose close left the slot empty) and nothing else took it
 * there. There is room: the newer's entry was just removed. (One that
 * on_log closed too stays out: unindexed, its end would not remove it.) */
static int dev_restore(ws_server *s, ws_conn *old) {
  uint32_t i = dev_slot(s, old->device_id);
  if (old->state != WS__OPEN || s->dev_slots[i] != NULL) return 0;
  s->dev_slots[i] = old;
  s->dev_count++;
  old->flags |= WS__F_REGISTERED;
  return 1;
}

void ws__registry_add_device(ws_conn *c) {
  ws_server *s = c->s;
  uint32_t i = dev_slot(s, c->device_id);
  ws_conn *old = s->dev_slots[i];
  s->dev_slots[i] = c;
  c->flags |= WS__F_REGISTERED;
  if (old == NULL) {
    s->dev_count++;
    return;
  }
  /* The older was unindexed first: its close cannot touch this entry. */
  old->flags &= (uint8_t)~WS__F_REGISTERED;
  if (old->state == WS__OPEN) {
    ws__log(s, WS_LOG_INFO, "device %s reconnected: closing the older one",
            c->device_id);
    if (dev_restore(s, old)) return; /* on_log ended this one */
  }
  /* One still in its handshake is in its own upgrade (on_log, from the line
   * above, opened this one): it must not open too with the same id, and
   * ws_conn_close ends it without a frame, which makes its upgrade return. */
  if (old->state == WS__OPEN || old->state == WS__HANDSHAKE)
    ws_conn_close(old, WS_CLOSE_REPLACED, "replaced by a newer connection");
}

ws_conn *ws_server_find_device(const ws_server *s, const char *device_id) {
  ws_conn *c;
  if (s == NULL || device_id == NULL || s->dev_count == 0) return NULL;
  c = s->dev_slots[dev_slot(s, device_id)];
  return c && c->state == WS__OPEN ? c : NULL; /* closing: not reachable */
}

/* ---- groups ---------------------------------------------------------- */

/* kind byte + name + NUL into key; 0 if the name is too long. */
static size_t group_key(char *key, char kind, const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > WS__GROUP_NAME_MAX) return 0;
  key[0] = kind;
  memcpy(key + 1, name, n + 1);
  return n + 1;
}

ws__group *ws__group_find(const ws_server *s, char kind, const char *name) {
  char key[WS__GROUP_NAME_MAX + 2];
  size_t n = group_key(key, kind, name);
  ws__group *g = NULL;
  uint32_t hv;
  if (n == 0) return NULL;
  hv = ws__hash(s, key, n); /* the macro reads it more than once */
  HASH_FIND_BYHASHVALUE(hh, s->groups, key, n, hv, g);
  return g;
}

static ws__group *group_get(ws_server *s, char kind, const char *name) {
  const ws__alloc *hal = &s->al;
  int hash_oom = 0;
  ws__group *g = ws__group_find(s, kind, name);
  char key[WS__GROUP_NAME_MAX + 2];
  size_t n;
  uint32_t hv;
  if (g) return g;
  n = group_key(key, kind, name);
  hv = ws__hash(s, key, n);
  g = ws__malloc(hal, sizeof(*g));
  if (g == NULL) return NULL;
  memset(g, 0, sizeof(*g));
  if ((g->name = ws__malloc(hal, n + 1)) == NULL) {
    ws__free(hal, g);
    return NULL;
  }
  memcpy(g->name, key, n + 1);
  HASH_ADD_KEYPTR_BYHASHVALUE(hh, s->groups, g->name, n, hv, g);
  if (hash_oom) {
    ws__free(hal, g->name);
    ws__free(hal, g);
    return NULL;
  }
  return g;
}

static void group_drop_if_empty(ws_server *s, ws__group *g) {
  const ws__alloc *hal = &s->al;
  if (g->count > 0) return;
  HASH_DEL(s->groups, g);
  ws__free(hal, g->name);
  ws__free(hal, g);
}

static ws__member *member_of(const ws_conn *c, const ws__group *g) {
  ws__member *m;
  for (m = c->members; m; m = m->cnext)
    if (m->group == g) return m;
  return NULL;
}

static int member_add(ws_conn *c, ws__group *g) {
  ws__member *m = ws__malloc(&c->s->al, sizeof(*m));
  if (m == NULL) return WS_ENOMEM;
  m->group = g;
  m->conn = c;
  m->gprev = NULL;
  m->gnext = g->members;
  if (g->members) g->members->gprev = m;
  g->members = m;
  g->count++;
  m->cnext = c->members;
  c->members = m;
  return WS_OK;
}

/* Unlinks m from its group and from c's list, frees it. */
static void member_remove(ws_conn *c, ws__member *m) {
  ws_server *s = c->s;
  ws__member **pp;
  ws__group *g = m->group;
  if (m->gprev)
    m->gprev->gnext = m->gnext;
  else
    g->members = m->gnext;
  if (m->gnext) m->gnext->gprev = m->gprev;
  g->count--;
  for (pp = &c->members; *pp; pp = &(*pp)->cnext)
    if (*pp == m) {
      *pp = m->cnext;
      break;
    }
  ws__free(&s->al, m);
  group_drop_if_empty(s, g);
}

int ws__group_name_ok(const char *name) {
  return name && name[0] && strlen(name) <= WS__GROUP_NAME_MAX;
}

static int can_join(const ws_conn *c, const char *name) {
  if (c == NULL || !ws__group_name_ok(name)) return WS_EINVAL;
  if (c->state != WS__OPEN && c->state != WS__HANDSHAKE) return WS_ECLOSED;
  return WS_OK;
}

static int join(ws_conn *c, char kind, const char *name) {
  ws__group *g;
  int rc = can_join(c, name);
  if (rc != WS_OK) return rc;
  g = group_get(c->s, kind, name);
  if (g == NULL) return WS_ENOMEM;
  if (member_of(c, g)) return WS_EEXIST;
  rc = member_add(c, g);
  if (rc != WS_OK) group_drop_if_empty(c->s, g);
  return rc;
}

int ws_conn_join(ws_conn *c, const char *group) {
  return join(c, 'g', group);
}

int ws_conn_leave(ws_conn *c, const char *group) {
  ws__group *g;
  ws__member *m;
  if (c == NULL || !ws__group_name_ok(group)) return WS_EINVAL;
  if (c->state == WS__DEAD) return WS_ECLOSED; /* left everything already */
  g = ws__group_find(c->s, 'g', group);
  m = g ? member_of(c, g) : NULL;
  if (m == NULL) return WS_ENOENT;
  member_remove(c, m);
  return WS_OK;
}

/* The bound user's membership (the one group of kind 'u'), or NULL. Not
 * cached in the connection: every pointer there is paid per connection. */
static ws__member *user_member(const ws_conn *c) {
  ws__member *m;
  for (m = c->members; m; m = m->cnext)
    if (m->group->name[0] == 'u') return m;
  return NULL;
}

int ws_conn_set_user(ws_conn *c, const char *user) {
  ws__member *old;
  int rc;
  /* The arguments are checked before the state, as in join(). */
  if (c == NULL || (user != NULL && !ws__group_name_ok(user)))
    return WS_EINVAL;
  if (c->state == WS__DEAD) return WS_ECLOSED;
  old = user_member(c);
  if (user == NULL) {
    if (old) member_remove(c, old);
    return WS_OK;
  }
  if (old && strcmp(old->group->name + 1, user) == 0) return WS_OK;
  rc = join(c, 'u', user);
  if (rc != WS_OK) return rc;
  if (old) member_remove(c, old);
  return WS_OK;
}

const char *ws_conn_user(const ws_conn *c) {
  ws__member *m = c ? user_member(c) : NULL;
  return m ? m->group->name + 1 : NULL;
}

static size_t count_of(const ws_server *s, char kind, const char *name) {
  ws__group *g;
  ws__member *m;
  size_t n = 0;
  if (s == NULL || name == NULL) return 0;
  g = ws__group_find(s, kind, name);
  for (m = g ? g->members : NULL; m; m = m->gnext)
    n += m->conn->state == WS__OPEN;
  return n;
}

size_t ws_server_user_count(const ws_server *s, const char *user) {
  return count_of(s, 'u', user);
}

size_t ws_server_group_count(const ws_server *s, const char *group) {
  return count_of(s, 'g', group);
}

void ws__registry_remove(ws_conn *c) {
  ws_server *s = c->s;
  if (c->flags & WS__F_REGISTERED) {
    dev_remove(s, dev_slot(s, c->device_id));
    c->flags &= (uint8_t)~WS__F_REGISTERED;
    dev_shrink_if_sparse(s);
  }
  while (c->members) member_remove(c, c->members);
}

void ws__registry_free(ws_server *s) {
  ws__free(&s->al, s->dev_slots);
  s->dev_slots = NULL;
  s->dev_cap = s->dev_count = 0;
}
