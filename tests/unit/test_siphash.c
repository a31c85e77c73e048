/* siphash.c against the SipHash-2-4 reference vectors, and the tables it
 * keys: ids chosen to collide under an unkeyed hash (what a peer could do
 * before) no longer share a probe run. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "mem_transport.h"
#include "support.h"

/* The reference vectors (key 00 01 .. 0f, message 00 01 .. len-1). */
Test(siphash, reference_vectors) {
  static const struct {
    size_t len;
    uint64_t want;
  } v[] = {{0, 0x726fdb47dd0e0e31ull},  {1, 0x74f839c593dc67fdull},
           {7, 0xab0200f58b01d137ull},  {8, 0x93f5f5799a932462ull},
           {15, 0xa129ca6149be45e5ull}, {16, 0x3f2acc7f57c29bdbull}};
  uint8_t key[16], msg[16];
  size_t i;
  for (i = 0; i < 16; i++) key[i] = msg[i] = (uint8_t)i;
  for (i = 0; i < sizeof v / sizeof v[0]; i++)
    cr_expect_eq(ws__siphash(key, msg, v[i].len), v[i].want, "length %zu",
                 v[i].len);
}

/* A server with the in-memory transport and defaults. */
static ws_server *plain_server(void) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  mt_config(&cfg, 0);
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  return s;
}

/* Two servers, even in one process, key their tables differently. */
Test(siphash, every_server_has_its_own_key) {
  ws_server *a = plain_server(), *b = plain_server();
  cr_expect_neq(memcmp(a->hash_key, b->hash_key, 16), 0);
  cr_expect_neq(ws__hash(a, "dev", 3), ws__hash(b, "dev", 3));
  ws_server_free(a);
  ws_server_free(b);
}

#define LOW 0xFFF /* the tables below hold at most 4096 slots or buckets */

/* The next name "x<k>" whose key as the table stores it (kind byte first
 * for a group, none for a device id) has an unkeyed FNV-1a hash with its
 * low 12 bits 0: what a client could compute against the tables before,
 * about 4096 tries a name. */
static void next_colliding(char name[32], const char *kind, unsigned long *k) {
  char key[40];
  uint32_t h;
  do {
    const char *p = key;
    snprintf(name, 32, "x%lu", (*k)++);
    snprintf(key, sizeof key, "%s%s", kind, name);
    for (h = 2166136261u; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  } while ((h & LOW) != 0);
}

/* The user and room table (uthash) hashed its keys ('g' + room name) with
 * unkeyed FNV-1a: names sharing their hashes' low bits all went into one
 * bucket, a chain every join, publish and leave walked. */
Test(siphash, rooms_colliding_under_an_unkeyed_hash_scatter) {
  enum { ROOMS = 300 };
  mt_conn A;
  unsigned long k = 0;
  unsigned i, worst = 0;
  char name[32];
  ws_server *s = plain_server();
  mt_connect(&A, s, "a", MT_WHOLE);
  for (i = 0; i < ROOMS; i++) {
    next_colliding(name, "g", &k);
    cr_assert_eq(ws_conn_join(A.c, name), WS_OK);
  }
  cr_assert_leq(s->groups->hh.tbl->num_buckets, LOW + 1);
  for (i = 0; i < s->groups->hh.tbl->num_buckets; i++)
    if (s->groups->hh.tbl->buckets[i].count > worst)
      worst = s->groups->hh.tbl->buckets[i].count;
  cr_expect_lt(worst, 20, "a bucket holds %u rooms", worst);
  ws_server_free(s);
  mt_free(&A);
}

/* The device index hashed ids with unkeyed FNV-1a: ids whose hashes share
 * their low bits filled one probe run, and every insert and lookup walked
 * it (20,000 such ids cost 90 times ordinary ones). Under the server's
 * key they scatter. */
Test(siphash, ids_colliding_under_an_unkeyed_hash_scatter) {
  enum { IDS = 300 };
  static mt_conn conns[IDS];
  uint32_t i, j, worst = 0, mask;
  unsigned long k = 0;
  char id[32];
  ws_server *s = plain_server();
  for (i = 0; i < IDS; i++) {
    next_colliding(id, "", &k);
    mt_connect(&conns[i], s, id, MT_WHOLE);
  }
  cr_assert_leq(s->dev_cap, LOW + 1);
  mask = s->dev_cap - 1;
  for (j = 0; j < s->dev_cap; j++) {
    const char *d;
    if (s->dev_slots[j] == NULL) continue;
    d = s->dev_slots[j]->device_id;
    i = (j - (ws__hash(s, d, strlen(d)) & mask)) & mask; /* its probe length */
    if (i > worst) worst = i;
  }
  cr_expect_lt(worst, 40, "an id sits %u slots past its home", worst);
  ws_server_free(s);
  for (i = 0; i < IDS; i++) mt_free(&conns[i]);
}
