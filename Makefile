# libwsmux - one Makefile. Outputs go under $(BUILD) (default build/).
#   make            static + shared library
#   make test       install missing deps, build, run every test tier
#   make run        install missing deps, build and run examples/pingpong (:8081)
#   make unit       unit tests only (tiers: see tests/*/tier.mk)
#   make asan       the test tiers again under ASan+UBSan (build/asan)
#   make valgrind   unit tests under valgrind memcheck
#   make fuzz       libFuzzer targets, FUZZ_SECONDS each (clang)
#   make coverage   gcov line coverage of lib/ (build/cov); coverage-examples
#   make lint       static analysis: gcc -fanalyzer, clang-tidy, cppcheck
#   make m32        library and unit tests built and run as 32-bit (i386)
#   make install PREFIX=/usr/local DESTDIR=
#   make bench      benchmark harness (bench/)

VERSION_MAJOR := $(shell sed -n 's/^\#define WS_VERSION_MAJOR \([0-9]*\)/\1/p' include/wsmux.h)
VERSION_MINOR := $(shell sed -n 's/^\#define WS_VERSION_MINOR \([0-9]*\)/\1/p' include/wsmux.h)
VERSION_PATCH := $(shell sed -n 's/^\#define WS_VERSION_PATCH \([0-9]*\)/\1/p' include/wsmux.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

CC       ?= cc
BUILD    ?= build
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
PKGDIR   ?= $(LIBDIR)/pkgconfig
ADAPTER_HEADERS := $(wildcard examples/adapters/*.h)
SAN      ?=
OPT      ?= -O2
PORT     ?= 8081

WARN     := -Wall -Wextra -Wpedantic -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-missing-field-initializers
CJSON_CFLAGS := $(shell pkg-config --cflags libcjson 2>/dev/null)
CJSON_LIBS   := $(shell pkg-config --libs libcjson 2>/dev/null || echo -lcjson)
# cJSON is in the API (ws_msg_data's tree): libwsmux.pc says Requires:
# libcjson where cJSON has a .pc, else names -lcjson in Libs itself (cJSON's
# own Makefile installs none, only its CMake build does).
CJSON_PC     := $(shell pkg-config --exists libcjson 2>/dev/null && echo libcjson)
# Debian's wslay ships no .pc file: use it when present (its Cflags too:
# a wslay under its own prefix), else -lwslay.
WSLAY_CFLAGS := $(shell pkg-config --cflags libwslay 2>/dev/null)
WSLAY_LIBS   := $(shell pkg-config --libs libwslay 2>/dev/null || echo -lwslay)

SANFLAGS := $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all)
# The user's (a packager's) CPPFLAGS and CFLAGS come last, so that they
# win over the defaults (-O0, hardening, -Wno-error); LDFLAGS go on the
# links.
BASE_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -g \
            $(WARN) -Iinclude $(CJSON_CFLAGS) $(WSLAY_CFLAGS) $(SANFLAGS) \
            $(CPPFLAGS) $(CFLAGS)
LIB_CFLAGS  := $(BASE_CFLAGS) -fPIC -fvisibility=hidden -MMD -MP
LDLIBS_DEPS := $(CJSON_LIBS) $(WSLAY_LIBS) -lpthread

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
STATIC   := $(BUILD)/libwsmux.a
SONAME   := libwsmux.so.$(VERSION_MAJOR)
SHARED   := $(BUILD)/libwsmux.so.$(VERSION)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(wildcard tests/support/*.c)
EX_SRC   := $(wildcard examples/*.c)
EX_BIN   := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)

.PHONY: all lib deps test test-build unit unit-build asan valgrind fuzz install uninstall run bench clean examples check-symbols check-pure

all: lib examples

lib: $(STATIC) $(SHARED) $(BUILD)/libwsmux.pc

V ?= 0
Q := $(if $(filter 1,$(V)),,@)

$(BUILD)/obj/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(LIB_CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(SANFLAGS) $(LDFLAGS) \
	    -o $@ $^ $(LDLIBS_DEPS) -lpthread
	$(Q)ln -sf libwsmux.so.$(VERSION) $(BUILD)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(BUILD)/libwsmux.so

# Regenerated every time: PREFIX may differ between `make` and `make install`.
# Directories under PREFIX are written relative to ${prefix}, so that
# pkg-config --define-prefix can relocate an installed tree; it takes the
# prefix to be two levels above the .pc file, so only when PKGDIR is
# $(PREFIX)/<dir>/pkgconfig (not with a multiarch LIBDIR such as
# $(PREFIX)/lib/x86_64-linux-gnu: absolute paths then).
PC_UP2 = $(patsubst %/,%,$(dir $(patsubst %/,%,$(dir $(PKGDIR)))))
PC_REL = $(and $(filter pkgconfig,$(notdir $(PKGDIR))),$(filter $(PREFIX),$(PC_UP2)))
PC_LIBDIR = $(if $(PC_REL),$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR)),$(LIBDIR))
PC_INCDIR = $(if $(PC_REL),$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCDIR)),$(INCDIR))
$(BUILD)/libwsmux.pc: pkgconfig/libwsmux.pc.in include/wsmux.h FORCE
	@mkdir -p $(dir $@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PC_LIBDIR)|g' \
	    -e 's|@INCDIR@|$(PC_INCDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@WSLAY_LIBS@|$(WSLAY_LIBS)|g' -e 's|@CJSON_PC@|$(CJSON_PC)|g' \
	    -e 's|@CJSON_LIBS@|$(if $(CJSON_PC),,$(CJSON_LIBS))|g' $< > $@

# Examples link the static library so they run from the build tree. An
# example needing more libraries sets EX_LIBS_<name> in examples/examples.mk.
$(BUILD)/examples/%: examples/%.c $(STATIC) $(wildcard examples/adapters/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) -D_GNU_SOURCE -Iexamples -DWS_EXAMPLES_DIR='"$(CURDIR)/examples"' -MMD -MP $< -o $@ $(STATIC) $(LDLIBS_DEPS) \
	    $(EX_LIBS_$*) -lpthread $(LDFLAGS)

examples: $(EX_BIN)

# Unit tests link the static library (internal ws__ symbols visible) and
# Criterion.
$(BUILD)/tests/%: tests/unit/%.c $(STATIC) $(TEST_SUPPORT) $(wildcard tests/support/*.h tests/unit/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) -Wno-missing-prototypes -Ilib -Itests/support -MMD -MP \
	    $< $(TEST_SUPPORT) -o $@ $(STATIC) $(LDLIBS_DEPS) -lcriterion $(LDFLAGS)

deps:
	@scripts/deps.sh

unit: $(UNIT_BIN)
	@UNIT_JOBS=$(JOBS) scripts/run-unit.sh $(UNIT_BIN)

# The library, examples and unit tests, built in parallel (JOBS: one per
# core) before the tiers run one at a time.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
unit-build: all $(UNIT_BIN)

# Test tiers beyond unit/ live in tests/<tier>/tier.mk fragments: each
# defines its targets and appends its name to TEST_TIERS.
TEST_TIERS :=
-include $(sort $(wildcard tests/*/tier.mk)) examples/examples.mk

# Every C test program the tiers build (CI builds them with clang too, as
# warnings are errors under both compilers). The TSan stress test and the
# fuzzers are clang's already.
test-build: unit-build $(CONF_MEM_BIN) $(CONF_NET_BIN) $(FAULTS_SERVER) \
            $(FAULTS_CLIENT) $(FAULTS_SESSION) $(BUILD)/tests/test_upgrade_answer \
            $(ADAPTER_TESTS:%=$(BUILD)/tests/test_adapter_%) \
            $(BUILD)/tests/accept_refuse.so $(BUILD)/tests/tls_renegotiate.so

# Runs every tier even when one fails, then fails if any did.
test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) unit-build
	@rc=0; for t in unit $(TEST_TIERS); do \
	  s=$$(date +%s); \
	  $(MAKE) --no-print-directory $$t || { rc=1; echo "tier $$t FAILED"; }; \
	  echo "tier $$t: $$(( $$(date +%s) - s )) s"; \
	done; exit $$rc

# The suite again with the library, examples and tests under ASan+UBSan.
# (fuzz builds its own sanitized objects; install-check has nothing to add.)
ASAN_TIERS ?= unit $(filter-out fuzz-regress install-check,$(TEST_TIERS))
asan:
	@$(MAKE) --no-print-directory -j$(JOBS) BUILD=build/asan SAN=address,undefined OPT=-O1 unit-build
	@rc=0; for t in $(ASAN_TIERS); do \
	  s=$$(date +%s); \
	  $(MAKE) --no-print-directory BUILD=build/asan SAN=address,undefined OPT=-O1 $$t \
	    || { rc=1; echo "asan tier $$t FAILED"; }; \
	  echo "asan tier $$t: $$(( $$(date +%s) - s )) s"; \
	done; exit $$rc

valgrind: $(UNIT_BIN)
	@VALGRIND=1 UNIT_JOBS=$(JOBS) scripts/run-unit.sh $(UNIT_BIN)

# Exported: exactly the functions wsmux.h declares. An internal ws__ one
# made visible passes a ws_* test, and one the header declares without
# WS_EXTERN is hidden, so a program calling it fails to link.
check-symbols: $(SHARED)
	@syms=$$(nm -D --defined-only $(SHARED)) || exit 1; \
	bad=$$(echo "$$syms" | awk '$$2 ~ /[TDBRW]/ {print $$3}' | grep -v '^ws_'); \
	if [ -n "$$bad" ]; then echo "non ws_ symbols exported:"; echo "$$bad"; exit 1; fi; \
	exp=$$(echo "$$syms" | awk '$$2 ~ /[TDBRW]/ {print $$3}' | sort -u); \
	api=$$($(CC) -E -P include/wsmux.h | grep -oE '\bws_[a-z0-9_]+\(' | tr -d '(' | \
	  sort -u) || exit 1; \
	for s in $$(printf '%s\n%s\n' "$$exp" "$$api" | sort | uniq -u); do \
	  case " "$$(echo $$exp)" " in *" $$s "*) echo "exported, not in wsmux.h: $$s";; \
	  *) echo "in wsmux.h, not exported: $$s";; esac; bad=1; done; \
	[ -z "$$bad" ] || exit 1; \
	echo "exported symbols: the $$(echo "$$api" | wc -l) functions wsmux.h declares"

# No I/O, clock, threads or writable globals in the core (see the script).
check-pure: $(STATIC)
	@scripts/check-pure.sh $(STATIC)

install: lib
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PKGDIR)
	install -m 644 include/wsmux.h $(DESTDIR)$(INCDIR)/wsmux.h
	@# The loop adapters are header-only glue a host includes as
	@# <wsmux/adapters/epoll.h> (hiredis installs its adapters/ the same way).
	install -d $(DESTDIR)$(INCDIR)/wsmux/adapters
	install -m 644 $(ADAPTER_HEADERS) $(DESTDIR)$(INCDIR)/wsmux/adapters/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libwsmux.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libwsmux.so.$(VERSION)
	ln -sf libwsmux.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libwsmux.so
	install -m 644 $(BUILD)/libwsmux.pc $(DESTDIR)$(PKGDIR)/libwsmux.pc
	@# A real install (no DESTDIR staging) by root refreshes the loader's
	@# cache, or programs linked against libwsmux.so would not start.
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/wsmux.h $(DESTDIR)$(LIBDIR)/libwsmux.a \
	      $(DESTDIR)$(LIBDIR)/libwsmux.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libwsmux.so $(DESTDIR)$(PKGDIR)/libwsmux.pc \
	      $(addprefix $(DESTDIR)$(INCDIR)/wsmux/adapters/,$(notdir $(ADAPTER_HEADERS)))
	@rmdir $(DESTDIR)$(INCDIR)/wsmux/adapters $(DESTDIR)$(INCDIR)/wsmux 2>/dev/null || true

run:
	@scripts/deps.sh run
	@$(MAKE) --no-print-directory $(BUILD)/examples/pingpong
	@echo "libwsmux ping/pong server: http://127.0.0.1:$(PORT)/  (WebSocket: ws://127.0.0.1:$(PORT)/ws?device_id=...)"
	@$(BUILD)/examples/pingpong --port $(PORT)

bench: $(STATIC)
	@$(MAKE) --no-print-directory -C bench

clean:
	rm -rf $(BUILD)

FORCE:

-include $(LIB_OBJ:.o=.d) $(UNIT_BIN:=.d) $(EX_BIN:=.d)
