# make m32: the library and the unit tests built as a 32-bit (i386) program
# and run: size_t and long are 32 bits there while WebSocket lengths are 64,
# as on the 32-bit ARM and x86 boards the library is embedded on. Not in
# TEST_TIERS, and not run by CI: it downloads i386 packages, and this
# mirror's i386 index was seen broken for hours (a CI failing on that says
# nothing about the code). SAN=undefined works too (under build/m32-san).
# scripts/deps.sh m32 installs gcc-multilib and unpacks the i386 libraries
# under M32_ROOT (why not installed: see there); on a kernel without IA32
# emulation (the Firecracker VMs this project runs on) it registers
# qemu-user-static for i386 programs with binfmt_misc, as root. There, on
# the nineteenth session's library: 543 passed, plain and SAN=undefined,
# about 2 minutes each (one case, a 5 GiB message length, needs a 64-bit
# size_t).
M32_ROOT ?= /opt/wsmux-i386
M32_LIBS := $(M32_ROOT)/usr/lib/i386-linux-gnu:$(M32_ROOT)/lib/i386-linux-gnu

.PHONY: m32
m32:
	@M32_ROOT=$(M32_ROOT) scripts/deps.sh m32
	$(Q)LD_LIBRARY_PATH=$(M32_LIBS) $(MAKE) --no-print-directory -j$(JOBS) \
	    BUILD=build/m32$(if $(SAN),-san) WSLAY_LIBS=-l:libwslay.so.1 \
	    CC="gcc -m32 -L$(M32_ROOT)/usr/lib/i386-linux-gnu -Wl,-rpath-link,$(M32_LIBS)" \
	    lib unit
