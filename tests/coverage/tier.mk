# Line coverage (gcov) with every line never run: scripts/coverage.sh.
#   make coverage            lib/ by the unit and in-memory conformance
#                            suites; fails below COVERAGE_MIN percent
#                            (default 98.5). Not a TEST_TIERS tier: CI runs
#                            it as a step of its own.
#   make coverage-examples   examples/ and their adapters by the e2e and
#                            integrations tiers (a report, minutes)
.PHONY: coverage coverage-examples
coverage:
	@scripts/coverage.sh

coverage-examples:
	@scripts/coverage.sh --examples
