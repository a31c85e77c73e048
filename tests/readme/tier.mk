# The README's code, compiled (and the complete host run) as a test.
README_DIR := $(BUILD)/readme
TEST_TIERS += readme

.PHONY: readme
readme: $(STATIC) README.md tests/readme/extract.sh
	$(Q)sh tests/readme/extract.sh $(README_DIR)
	$(Q)$(CC) $(BASE_CFLAGS) -Wno-missing-prototypes $(README_DIR)/host.c -o $(README_DIR)/host $(STATIC) $(LDLIBS_DEPS)
	@# Every other marked block (usage.c, and any added later) compiles.
	$(Q)test -f $(README_DIR)/usage.c || exit 1; for f in $(README_DIR)/*.c; do [ "$$f" = $(README_DIR)/host.c ] && continue; \
	  $(CC) $(BASE_CFLAGS) -c "$$f" -o "$${f%.c}.o" || exit 1; done
	$(Q)README_HOST_BIN=$(README_DIR)/host /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/readme/test_readme.py
