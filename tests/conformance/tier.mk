# RFC 6455 conformance (tests/conformance/): one case table (cases.c) run
# twice.
#   make conformance      both modes; prints conformance[mem]: / [net]:
#                         summaries plus per-group counts
#   make conformance-mem  in-process server over a memory transport
#   make conformance-net  conformance_net against build/examples/pingpong on
#                         a free loopback port (started and stopped here)
#   make conformance-adapters  the same against the epoll, libuv and
#                         libevent ping/pong examples and reuseport (no page
#                         at "/"), so that no loop adapter drifts from the
#                         poll one, and every group but the handshake's
#                         against mhd (libmicrohttpd reads the requests)
CONF_DIR     := $(BUILD)/conformance
CONF_COMMON  := tests/conformance/cases.c tests/conformance/cases.h
CONF_MEM_BIN := $(CONF_DIR)/test_conformance_mem
CONF_NET_BIN := $(CONF_DIR)/conformance_net

TEST_TIERS += conformance

.PHONY: conformance conformance-mem conformance-net conformance-adapters

$(CONF_MEM_BIN): tests/conformance/test_conformance_mem.c \
    tests/conformance/mem_transport.c tests/conformance/mem_transport.h \
    $(CONF_COMMON) $(STATIC) $(TEST_SUPPORT) $(wildcard tests/support/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE_CFLAGS) -Wno-missing-prototypes -Itests/support \
	    tests/conformance/test_conformance_mem.c tests/conformance/mem_transport.c \
	    tests/conformance/cases.c $(TEST_SUPPORT) -o $@ $(STATIC) $(LDLIBS_DEPS) -lcriterion

# A plain client: it needs neither the library nor Criterion.
$(CONF_NET_BIN): tests/conformance/conformance_net.c $(CONF_COMMON)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE_CFLAGS) tests/conformance/conformance_net.c \
	    tests/conformance/cases.c -o $@

conformance-mem: $(CONF_MEM_BIN)
	@log=$(CONF_DIR)/mem.log; timeout -k 5 600 $(CONF_MEM_BIN) >$$log 2>&1; rc=$$?; \
	if [ $$rc -eq 0 ] && grep -qaEf tests/support/sanitizer.re $$log; then \
	  rc=99; grep -aE -A12 -f tests/support/sanitizer.re $$log | head -n 40; fi; \
	grep -a '^FAIL\|^conformance\[mem\]' $$log; \
	p=$$(sed -n 's/^conformance\[mem\] .*: \([0-9]*\) passed.*/\1/p' $$log | awk '{s+=$$1} END {print s+0}'); \
	f=$$(sed -n 's/^conformance\[mem\] .*passed, \([0-9]*\) failed.*/\1/p' $$log | awk '{s+=$$1} END {print s+0}'); \
	if [ $$rc -ne 0 ] && [ $$f -eq 0 ]; then f=1; tail -n 30 $$log; fi; \
	echo "conformance[mem]: $$p passed, $$f failed"; [ $$rc -eq 0 ] && [ $$f -eq 0 ]

conformance-net: $(CONF_NET_BIN) $(BUILD)/examples/pingpong
	$(Q)sh tests/conformance/run_net.sh $(BUILD)/examples/pingpong $(CONF_NET_BIN)

CONF_ADAPTERS := pingpong_epoll pingpong_libuv pingpong_libevent reuseport

conformance-adapters: $(CONF_NET_BIN) $(BUILD)/examples/mhd \
    $(CONF_ADAPTERS:%=$(BUILD)/examples/%)
	@rc=0; for a in $(CONF_ADAPTERS); do \
	  sh tests/conformance/run_net.sh $(BUILD)/examples/$$a \
	    $(CONF_NET_BIN) --no-page --label $${a#pingpong_} || rc=1; \
	done; \
	sh tests/conformance/run_net.sh $(BUILD)/examples/mhd $(CONF_NET_BIN) \
	  --no-handshake --label mhd || rc=1; \
	exit $$rc

# Every mode even when one fails; fails if any did.
conformance:
	@rc=0; \
	$(MAKE) --no-print-directory conformance-mem || rc=1; \
	$(MAKE) --no-print-directory conformance-net || rc=1; \
	$(MAKE) --no-print-directory conformance-adapters || rc=1; \
	exit $$rc
