# libFuzzer targets (tests/fuzz/fuzz_<name>.c), built with clang.
#   make fuzz          build every target, run each for FUZZ_SECONDS (default
#                      60) on a scratch copy of its seed corpus
#   make fuzz-regress  run each target once over its seed corpus and its
#                      crash repros (tests/fuzz/regressions/<name>/): a test
#                      tier
# The library is rebuilt here with coverage instrumentation and sanitizers
# (objects under $(BUILD)/fuzz/lib/), never mixed with the normal build.
# Extra libFuzzer flags: make fuzz FUZZ_FLAGS='-jobs=2 -workers=2'.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?=
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN     := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_LIB_OBJ := $(LIB_SRC:lib/%.c=$(FUZZ_DIR)/lib/%.o)
# BASE_CFLAGS minus its optimisation level and any SAN= sanitizers.
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
FUZZ_CFLAGS  := $(filter-out -O% -fsanitize=% -fno-sanitize-recover=%,$(BASE_CFLAGS)) \
                -O1 $(FUZZ_SAN)

TEST_TIERS += fuzz-regress

.PHONY: fuzz fuzz-build fuzz-regress
# Keep the instrumented objects: they are intermediate to a pattern rule.
.SECONDARY: $(FUZZ_LIB_OBJ)

$(FUZZ_DIR)/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZLD  $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Ilib -MMD -MP $< \
	    $(FUZZ_LIB_OBJ) -o $@ $(LDLIBS_DEPS)

fuzz-build: $(FUZZ_BIN)

# Each target fuzzes a scratch copy of its corpus, so new inputs never land
# in the repository; crashes go to $(FUZZ_DIR)/artifacts/<name>/. The
# targets run at the same time (each for FUZZ_SECONDS of wall time), then
# each one's exit status is read back.
fuzz: fuzz-build
	@for t in $(FUZZ_NAMES); do \
	  work=$(FUZZ_DIR)/work/$$t; art=$(FUZZ_DIR)/artifacts/$$t; \
	  rm -rf $$work $(FUZZ_DIR)/fuzz_$$t.rc; mkdir -p $$work $$art; \
	  cp tests/fuzz/corpus/$$t/* $$work/ 2>/dev/null; \
	  dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  ( $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      -artifact_prefix=$$art/ $$dict $(FUZZ_FLAGS) $$work \
	      >$(FUZZ_DIR)/fuzz_$$t.log 2>&1; echo $$? >$(FUZZ_DIR)/fuzz_$$t.rc ) & \
	done; wait; \
	pass=0; fail=0; \
	for t in $(FUZZ_NAMES); do \
	  if [ "$$(cat $(FUZZ_DIR)/fuzz_$$t.rc 2>/dev/null)" = 0 ]; then \
	    pass=$$((pass + 1)); echo "ok   $$t: $$(grep -a -E '^#[0-9]+' $(FUZZ_DIR)/fuzz_$$t.log | tail -n 1)"; \
	  else \
	    fail=$$((fail + 1)); echo "FAIL $$t (log: $(FUZZ_DIR)/fuzz_$$t.log, artifacts: $(FUZZ_DIR)/artifacts/$$t/)"; \
	    tail -n 40 $(FUZZ_DIR)/fuzz_$$t.log; \
	  fi; \
	done; \
	echo "fuzz: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# One run per input: every seed and every crash repro must pass. A target
# with no inputs fails: it would replay nothing (make fuzz seeds from the
# same corpus).
fuzz-regress: fuzz-build
	@pass=0; fail=0; \
	for t in $(FUZZ_NAMES); do \
	  files=$$(find tests/fuzz/corpus/$$t tests/fuzz/regressions/$$t -type f 2>/dev/null | sort); \
	  n=$$(echo "$$files" | grep -c . || true); \
	  if [ "$$n" -eq 0 ]; then \
	    fail=$$((fail + 1)); echo "FAIL $$t: no inputs (tests/fuzz/corpus/$$t/ is missing or empty)"; \
	    continue; \
	  fi; \
	  if $(FUZZ_DIR)/fuzz_$$t $$files >$(FUZZ_DIR)/regress_$$t.log 2>&1; then \
	    pass=$$((pass + 1)); echo "ok   $$t: $$n inputs"; \
	  else \
	    fail=$$((fail + 1)); echo "FAIL $$t (log: $(FUZZ_DIR)/regress_$$t.log)"; \
	    tail -n 40 $(FUZZ_DIR)/regress_$$t.log; \
	  fi; \
	done; \
	echo "fuzz-regress: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_BIN:=.d)
