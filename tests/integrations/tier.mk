# Integrations tier: every loop adapter and host integration as a real
# server on loopback, driven by python3-websockets (pytest), plus the
# ws_post stress test under ThreadSanitizer.
#   make integrations                    run it (builds what it needs)
#   make integrations INTEG_ARGS='-k tls -x'   pass options to pytest
#   make integrations INTEG_JOBS=1       one test at a time
#   make post-stress-tsan                the TSan stress test alone
# Bounded: every wait in the tests is 10 s; the pytest run is capped at
# INTEG_TIMEOUT seconds, the stress test at POST_STRESS_TIMEOUT. CI's runs
# take 85-110 s (ASan); 2 jobs under ASan beside busy loops took up to 241.
TEST_TIERS += integrations

# Extra link flags of the examples this tier owns (the main Makefile's
# example rule appends EX_LIBS_<name>).
EX_LIBS_pingpong_libuv     := $(shell pkg-config --libs libuv 2>/dev/null || echo -luv)
EX_LIBS_pingpong_libevent  := $(shell pkg-config --libs libevent_pthreads libevent 2>/dev/null || echo -levent_pthreads -levent)
EX_LIBS_mhd                := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
EX_LIBS_tls                := $(shell pkg-config --libs openssl 2>/dev/null || echo -lssl -lcrypto)

INTEG_DIR     := tests/integrations
INTEG_BINS    := $(addprefix $(BUILD)/examples/,pingpong pingpong_epoll pingpong_libuv \
                   pingpong_libevent mhd tls reuseport)
INTEG_TIMEOUT ?= 420
INTEG_ARGS    ?=
# Most of the pytest run waits on deadlines (a request cut at 10 s, a peer
# that never reads let go), not on the CPU: pytest-xdist runs INTEG_JOBS
# tests at once (each starts its own servers on free ports). 1: serially.
# On two cores: about 100 s with 3, 45-60 s with 6 (ASan build included;
# ten runs with 6 passed, four of them beside two busy loops).
INTEG_JOBS    ?= 6
INTEG_XDIST   := $(if $(filter-out 0 1,$(INTEG_JOBS)),-n $(INTEG_JOBS))

# The stress test compiles lib/*.c itself with -fsanitize=thread (clang):
# TSan needs every object instrumented, so the normal library is not used.
TSAN_CC       ?= clang
TSAN_DIR      := $(BUILD)/tsan
TSAN_CFLAGS   := $(filter-out -O% -fsanitize=% -fno-sanitize-recover=%,$(BASE_CFLAGS)) \
                 -O1 -fsanitize=thread -fno-omit-frame-pointer
POST_STRESS_TIMEOUT ?= 300
POST_STRESS_ARGS ?=

$(TSAN_DIR)/test_post_stress: $(INTEG_DIR)/test_post_stress.c $(LIB_SRC) $(wildcard lib/*.h) include/wsmux.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TSANCC  $@")
	$(Q)$(TSAN_CC) $(TSAN_CFLAGS) -Ilib $(INTEG_DIR)/test_post_stress.c $(LIB_SRC) \
	    -o $@ $(LDLIBS_DEPS)

# ws_conn_upgrade_answer in memory (the MHD example's library entry point).
$(BUILD)/tests/test_upgrade_answer: $(INTEG_DIR)/test_upgrade_answer.c $(INTEG_DIR)/check.h $(STATIC)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $< -o $@ $(STATIC) $(LDLIBS_DEPS)

# Small C tests of one adapter each (tests/integrations/test_adapter_*.c,
# including examples/adapters/<loop>.h): make adapter-<name> runs one.
#   deadline  libevent: a callback whose own tick closes its socket
#   sigpipe   libuv: a host that leaves SIGPIPE alone, a reset mid-write
#   nofd      epoll: out of descriptors with no spare, the listener paused
#   nofd_loops  poll and libevent: the same
#   uv_copy   libuv: a partial uv_try_write, the rest copied past it
#   uv_oom    libuv: no memory for an accepted socket (the next one served)
#             or for the copy past a partial uv_try_write (no stall)
#   uv_initfail libuv: a failed wsa_uv_init leaves nothing on the loop (the
#             host frees its server and runs its loop on)
#   ev_initfail libevent: a failed wsa_ev_init frees what it made
#   stopped   poll and epoll: a drain deadline passed while the process was
#             stopped ends in the run SIGCONT interrupted (uncapped waits)
# (accept4 failing with ENOBUFS is test_accept_refused.py: an LD_PRELOAD
# accept4 in the whole example, every loop that accepts on its own.)
ADAPTER_TESTS         := deadline sigpipe nofd nofd_loops uv_copy uv_oom uv_initfail \
                         ev_initfail stopped
ADAPTER_LIBS_deadline := $(EX_LIBS_pingpong_libevent)
ADAPTER_LIBS_nofd_loops := $(EX_LIBS_pingpong_libevent)
ADAPTER_LIBS_sigpipe  := $(EX_LIBS_pingpong_libuv)
ADAPTER_LIBS_uv_copy  := $(EX_LIBS_pingpong_libuv)
ADAPTER_LIBS_uv_oom   := $(EX_LIBS_pingpong_libuv)
ADAPTER_LIBS_uv_initfail := $(EX_LIBS_pingpong_libuv)
ADAPTER_LIBS_ev_initfail := $(EX_LIBS_pingpong_libevent)

$(BUILD)/tests/test_adapter_%: $(INTEG_DIR)/test_adapter_%.c $(INTEG_DIR)/check.h $(INTEG_DIR)/nofd.h $(INTEG_DIR)/uv_one.h $(STATIC) $(wildcard examples/adapters/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) -D_GNU_SOURCE -Iexamples $< -o $@ $(STATIC) \
	    $(LDLIBS_DEPS) $(ADAPTER_LIBS_$*)

# The LD_PRELOAD shim test_accept_refused.py starts examples with. Not
# sanitized: it is loaded into the ASan examples too, before their runtime.
$(BUILD)/tests/accept_refuse.so: $(INTEG_DIR)/accept_refuse.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) -std=c11 -O2 $(WARN) -fPIC -shared $< -o $@

# The LD_PRELOAD shim that gives examples/tls OpenSSL 1.1.1's default
# (client-initiated renegotiation allowed), for test_hostile_clients.py.
$(BUILD)/tests/tls_renegotiate.so: $(INTEG_DIR)/tls_renegotiate.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) -std=c11 -O2 $(WARN) -fPIC -shared $< -o $@ \
	    $(EX_LIBS_tls) -ldl

.PHONY: integrations integrations-pytest post-stress-tsan upgrade-answer adapter-tests $(ADAPTER_TESTS:%=adapter-%)
upgrade-answer: $(BUILD)/tests/test_upgrade_answer
	$(Q)timeout -k 5 30 $(BUILD)/tests/test_upgrade_answer

$(ADAPTER_TESTS:%=adapter-%): adapter-%: $(BUILD)/tests/test_adapter_%
	$(Q)timeout -k 5 30 $<

# All of them, each run even when one fails.
adapter-tests:
	@rc=0; for t in $(ADAPTER_TESTS); do \
	  $(MAKE) --no-print-directory adapter-$$t || rc=1; \
	done; exit $$rc

post-stress-tsan: $(TSAN_DIR)/test_post_stress
	$(Q)TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" \
	    timeout -k 5 $(POST_STRESS_TIMEOUT) $(TSAN_DIR)/test_post_stress $(POST_STRESS_ARGS)

integrations-pytest: $(INTEG_BINS) $(BUILD)/tests/accept_refuse.so \
    $(BUILD)/tests/tls_renegotiate.so $(BUILD)/examples/echo_poll
	$(Q)BUILD=$(BUILD) PYTHONDONTWRITEBYTECODE=1 timeout -k 5 $(INTEG_TIMEOUT) \
	    /usr/bin/python3 -m pytest -q -p no:cacheprovider $(INTEG_XDIST) $(INTEG_ARGS) $(INTEG_DIR)

# Runs both parts even when the first fails; prints both summaries.
integrations:
	@rc=0; \
	$(MAKE) --no-print-directory upgrade-answer || rc=1; \
	$(MAKE) --no-print-directory adapter-tests || rc=1; \
	$(MAKE) --no-print-directory integrations-pytest || rc=1; \
	$(MAKE) --no-print-directory post-stress-tsan || rc=1; \
	if [ $$rc -eq 0 ]; then echo "integrations: upgrade-answer, adapter tests ($(ADAPTER_TESTS)), pytest and post-stress-tsan passed"; \
	else echo "integrations: FAILED"; fi; exit $$rc
