# Line and branch coverage of lib/ (gcov) by the unit and in-memory
# conformance suites; fails below COVERAGE_MIN percent of lines (default
# 98.5). Not a TEST_TIERS tier: CI runs it as a step of its own.
#   make coverage   per-file table, total, and every line never run
.PHONY: coverage
coverage:
	@scripts/coverage.sh
