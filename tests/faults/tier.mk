# Fault tier (tests/faults/): faults under load against a real server
# process on loopback, plus host faults at every point of a session in
# process.
#   make faults                       build and run all; prints
#                                     "faults: N passed, N failed"
#   make faults FAULTS_ONLY='churn cap'   a subset (socket tests by name,
#                                     "session" for the in-process one)
#   make faults FAULTS_SCALE=4        divide the load sizes (slow builds)
# fault_server is the server (libwsmux on its own epoll loop, counting
# allocator, control on stdin/stdout); fault_client runs one socket test
# per invocation and starts its own server; test_session_faults is a
# Criterion test (send failing / the host closing at every step).
# Bounded: each test runs under `timeout` (FAULTS_TIMEOUT seconds).
FAULTS_DIR     := $(BUILD)/faults
FAULTS_SERVER  := $(FAULTS_DIR)/fault_server
FAULTS_CLIENT  := $(FAULTS_DIR)/fault_client
FAULTS_SESSION := $(FAULTS_DIR)/test_session_faults
FAULTS_TIMEOUT ?= 60
FAULTS_ONLY    ?=
FAULTS_SCALE   ?= 1

TEST_TIERS += faults

.PHONY: faults

$(FAULTS_SERVER): tests/faults/fault_server.c $(STATIC) include/wsmux.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) -D_GNU_SOURCE $< -o $@ $(STATIC) $(LDLIBS_DEPS)

# A plain client: it needs neither the library nor Criterion.
$(FAULTS_CLIENT): tests/faults/fault_client.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) -D_GNU_SOURCE $< -o $@ -lpthread

$(FAULTS_SESSION): tests/faults/test_session_faults.c tests/support/support.c \
    tests/support/support.h $(STATIC) include/wsmux.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) -D_GNU_SOURCE -Wno-missing-prototypes -Itests/support \
	    tests/faults/test_session_faults.c tests/support/support.c -o $@ \
	    $(STATIC) $(LDLIBS_DEPS) -lcriterion

faults: $(FAULTS_SERVER) $(FAULTS_CLIENT) $(FAULTS_SESSION)
	$(Q)FAULTS_SCALE=$(FAULTS_SCALE) sh tests/faults/run.sh $(FAULTS_DIR) \
	    $(FAULTS_TIMEOUT) $(FAULTS_ONLY)
