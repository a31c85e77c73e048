# End-to-end tier: the examples as real servers on loopback, driven by
# python3-websockets (pytest), npm `ws` and headless Chromium
# (playwright-core), both pinned in tests/e2e/node/package-lock.json.
#   make e2e                 run it (after `make all`; builds what it needs)
#   make e2e E2E_ARGS='-k chat -x'   pass options to pytest
#   make e2e E2E_JOBS=1      one test at a time
# Bounded: pytest's own waits are 10 s each and the whole run is capped at
# E2E_TIMEOUT seconds; servers and browsers die with the runner.
TEST_TIERS += e2e

E2E_DIR      := tests/e2e
E2E_NODE     := $(E2E_DIR)/node
E2E_BINS     := $(BUILD)/examples/pingpong $(BUILD)/examples/echo_poll \
                $(BUILD)/examples/chat
E2E_TIMEOUT  ?= 110
E2E_ARGS     ?=
# Each test starts its own servers on free ports, and half the run waits on
# them (a paused reader, a drain): pytest-xdist runs E2E_JOBS at once
# (about 27 s serially, 15 s with 3). 1: serially.
E2E_JOBS     ?= 3
E2E_XDIST    := $(if $(filter-out 0 1,$(E2E_JOBS)),-n $(E2E_JOBS))

# `npm ci` from the lockfile when node_modules is missing or older than it
# (scripts/deps.sh does the same; this keeps `make e2e` self-sufficient).
$(E2E_NODE)/node_modules/.package-lock.json: $(E2E_NODE)/package-lock.json $(E2E_NODE)/package.json
	@echo "  NPM     ci ($(E2E_NODE))"
	$(Q)cd $(E2E_NODE) && npm ci --no-audit --no-fund --loglevel=error
	$(Q)touch $@

.PHONY: e2e
e2e: $(E2E_BINS) $(E2E_NODE)/node_modules/.package-lock.json
	$(Q)BUILD=$(BUILD) PYTHONDONTWRITEBYTECODE=1 timeout -k 5 $(E2E_TIMEOUT) \
	    /usr/bin/python3 -m pytest -q -p no:cacheprovider $(E2E_XDIST) $(E2E_ARGS) $(E2E_DIR)
