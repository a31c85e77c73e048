# Static analysis (scripts/lint.sh): gcc -fanalyzer, clang-tidy (with
# clang's static analyzer) and cppcheck over lib/, include/wsmux.h and the
# examples; installs what it lacks (scripts/deps.sh lint) and fails on any
# finding. A CI step of its own, not a test tier (not in TEST_TIERS):
#   make lint              about a minute on two cores
#   make lint LINT_JOBS=4  more analysers at once (default: JOBS)
# The flags are the build's own (BASE_CFLAGS, and the examples' extras)
# minus any SAN= sanitizers.
LINT_JOBS   ?= $(JOBS)
LINT_CFLAGS := $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(BASE_CFLAGS))

.PHONY: lint
lint:
	$(Q)LINT_CFLAGS='$(LINT_CFLAGS)' \
	LINT_EXFLAGS='$(LINT_CFLAGS) -D_GNU_SOURCE -Iexamples -DWS_EXAMPLES_DIR="$(CURDIR)/examples"' \
	LINT_OUT='$(BUILD)/lint' LINT_JOBS='$(LINT_JOBS)' scripts/lint.sh
