/*
 * LD_PRELOAD shim for the integrations tier: every SSL_CTX the server
 * makes allows client-initiated renegotiation, as OpenSSL 1.1.1's servers
 * do by default (OpenSSL 3 refuses it unless told otherwise). Lets a test
 * run examples/tls as it runs where OpenSSL 1.1.1 is the system's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
  SSL_CTX *(*next)(const SSL_METHOD *);
  SSL_CTX *ctx;
  /* dlsym's object pointer to a function pointer: POSIX allows it. */
  *(void **)&next = dlsym(RTLD_NEXT, "SSL_CTX_new");
  ctx = next ? next(method) : NULL;
  if (ctx) SSL_CTX_set_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
  return ctx;
}
