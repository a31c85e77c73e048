# The README's code, compiled (and the complete host run) as a test.
README_DIR := $(BUILD)/readme
TEST_TIERS += readme

.PHONY: readme
readme: $(STATIC) README.md tests/readme/extract.sh
	$(Q)sh tests/readme/extract.sh $(README_DIR)
	$(Q)$(CC) $(BASE_CFLAGS) -Wno-missing-prototypes $(README_DIR)/host.c -o $(README_DIR)/host $(STATIC) $(LDLIBS_DEPS)
	$(Q)$(CC) $(BASE_CFLAGS) -c $(README_DIR)/usage.c -o $(README_DIR)/usage.o
	$(Q)README_HOST_BIN=$(README_DIR)/host /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/readme/test_readme.py
