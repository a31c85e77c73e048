# The README's code, compiled (and the complete host run) as a test.
README_DIR := $(BUILD)/readme
# Snippets are fragments of a user's program (no prototypes needed),
# built against the adapters as installed (<wsmux/adapters/*.h>, here from
# the tree) and the loops' headers. Without the Makefile's feature macros:
# a user's -std=c11 has none, so a snippet defines those it needs.
README_BASE_CFLAGS := $(filter-out -D_POSIX_C_SOURCE=% -D_DEFAULT_SOURCE, \
  $(BASE_CFLAGS))
README_CFLAGS = $(README_BASE_CFLAGS) -Wno-missing-prototypes -I$(README_DIR)/inc \
  $(shell pkg-config --cflags libuv libevent libmicrohttpd openssl 2>/dev/null)
# $(README_DIR)/serve_$(1): the README's $(1) block as a program (SERVE_$(2)),
# linked with $(3).
readme_serve = $(CC) $(README_CFLAGS) -DSERVE_$(2) -DSNIPPET='"$(abspath $(README_DIR)/$(1).c)"' \
  tests/readme/serve_main.c -o $(README_DIR)/serve_$(1) $(STATIC) $(LDLIBS_DEPS) $(3)
TEST_TIERS += readme

.PHONY: readme
readme: $(STATIC) README.md tests/readme/extract.sh
	$(Q)sh tests/readme/extract.sh $(README_DIR)
	@# The README's poll variant: the epoll snippet with epoll replaced.
	$(Q)sed 's/epoll/poll/g' $(README_DIR)/epoll.c > $(README_DIR)/poll.c
	$(Q)$(CC) $(README_BASE_CFLAGS) -Wno-missing-prototypes $(README_DIR)/host.c -o $(README_DIR)/host $(STATIC) $(LDLIBS_DEPS)
	@# Every other marked block (usage.c, the integrations' snippets, and
	@# any added later) compiles, also with -D_GNU_SOURCE given as well
	@# (the README offers both ways).
	$(Q)mkdir -p $(README_DIR)/inc/wsmux && ln -sfn $(CURDIR)/examples/adapters $(README_DIR)/inc/wsmux/adapters
	$(Q)for b in usage epoll libuv libevent mhd tls post reuseport; do test -f $(README_DIR)/$$b.c || { echo "README block $$b missing"; exit 1; }; done; \
	for f in $(README_DIR)/*.c; do [ "$$f" = $(README_DIR)/host.c ] && continue; \
	  $(CC) $(README_CFLAGS) -c "$$f" -o "$${f%.c}.o" || exit 1; \
	  $(CC) $(README_CFLAGS) -D_GNU_SOURCE -fsyntax-only "$$f" || exit 1; done
	@# The loop snippets run: tests/readme/serve_main.c makes each a program.
	$(Q)$(call readme_serve,epoll,EPOLL,)
	$(Q)$(call readme_serve,poll,POLL,)
	$(Q)$(call readme_serve,libuv,UV,-luv)
	$(Q)$(call readme_serve,libevent,EV,-levent)
	$(Q)README_SERVE_DIR=$(README_DIR) README_HOST_BIN=$(README_DIR)/host /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/readme/test_readme.py
