# make install into a temporary prefix, then build and run a program with
# `pkg-config --cflags --libs libwsmux` against it (shared and static; and
# as C99 and as C++11, as the header promises); the installed loop adapters
# serve a round trip, as C and as C++11 (a C++ server includes them as they
# are); the .pc relocates with --define-prefix; make uninstall leaves no file
# behind; the user's CPPFLAGS, CFLAGS, LDFLAGS and AR are used; the .pc
# works where cJSON has none.
TEST_TIERS += install-check

# C++ takes the same warnings but the C-only ones.
INSTALL_CXX_WARN := $(filter-out -Wstrict-prototypes -Wmissing-prototypes,$(WARN))

.PHONY: install-check
install-check: lib
	$(Q)rm -rf $(BUILD)/install-check && mkdir -p $(BUILD)/install-check
	$(Q)$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(BUILD)/install-check/opt/wsmux >/dev/null
	$(Q)set -e; root=$(CURDIR)/$(BUILD)/install-check; \
	export PKG_CONFIG_PATH=$$root/opt/wsmux/lib/pkgconfig; \
	$(CC) tests/install/app.c $$(pkg-config --cflags --libs libwsmux) -o $$root/app-shared; \
	$(CC) tests/install/app.c $$(pkg-config --cflags libwsmux) $$root/opt/wsmux/lib/libwsmux.a \
	   $$(pkg-config --libs --static libwsmux | sed 's/-lwsmux//') -o $$root/app-static; \
	LD_LIBRARY_PATH=$$root/opt/wsmux/lib $$root/app-shared; $$root/app-static; \
	: "the header's promise: C99 or later, or C++11 (extern \"C\" linkage)"; \
	$(CC) -std=c99 $(WARN) tests/install/app.c $$(pkg-config --cflags libwsmux) \
	   -o $$root/app-c99 $$(pkg-config --libs libwsmux); \
	$(CXX) -std=c++11 $(INSTALL_CXX_WARN) \
	   -x c++ tests/install/app.c -x none $$(pkg-config --cflags --libs libwsmux) \
	   -o $$root/app-cxx; \
	: "the header included first and alone, as C99 and as C++11; clang"; \
	: "also reserves in C++ every name holding a double underscore"; \
	printf '#include <wsmux.h>\n' | $(CC) -std=c99 $(WARN) -fsyntax-only \
	  $$(pkg-config --cflags libwsmux) -x c -; \
	printf '#include <wsmux.h>\n' | $(CXX) -std=c++11 $(INSTALL_CXX_WARN) -fsyntax-only \
	  $$(pkg-config --cflags libwsmux) -x c++ -; \
	if command -v clang++ >/dev/null; then printf '#include <wsmux.h>\n' | \
	  clang++ -std=c++11 $(INSTALL_CXX_WARN) -Wreserved-identifier -fsyntax-only \
	  $$(pkg-config --cflags libwsmux) -x c++ -; fi; \
	LD_LIBRARY_PATH=$$root/opt/wsmux/lib $$root/app-c99; \
	LD_LIBRARY_PATH=$$root/opt/wsmux/lib $$root/app-cxx; \
	test "$$(readelf -d $$root/opt/wsmux/lib/libwsmux.so | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')" = libwsmux.so.$(VERSION_MAJOR); \
	: "a packager's CPPFLAGS and CFLAGS reach every compile of lib/,"; \
	: "LDFLAGS the link of the .so, AR the archive (dpkg-buildflags' -O2"; \
	: "and hardening, a cross toolchain's ar)"; \
	n=$$($(MAKE) --no-print-directory -n -B lib CPPFLAGS=-DWS_PKG_CPP \
	     CFLAGS=-DWS_PKG_C LDFLAGS=-Wl,-z,now AR=ws-pkg-ar); \
	c=$$(echo "$$n" | grep -c -- ' -c lib/'); test "$$c" -gt 0; \
	test "$$(echo "$$n" | grep -- ' -c lib/' | grep -- -DWS_PKG_CPP | grep -c -- -DWS_PKG_C)" = "$$c"; \
	echo "$$n" | grep -- ' -shared ' | grep -q -- -Wl,-z,now; \
	echo "$$n" | grep -q '^ws-pkg-ar rcs '; \
	: "a wslay with a .pc (built under its own prefix): its Cflags too"; \
	mkdir -p $$root/wslay-pc; printf '%s\n' 'Name: libwslay' 'Version: 1' \
	  'Description: d' 'Cflags: -I/ws-pkg/include' 'Libs: -lwslay' \
	  > $$root/wslay-pc/libwslay.pc; \
	n=$$(PKG_CONFIG_PATH=$$root/wslay-pc $(MAKE) --no-print-directory -n -B lib); \
	test "$$(echo "$$n" | grep -- ' -c lib/' | grep -c -- -I/ws-pkg/include)" = "$$c"; \
	: "relocatable: --define-prefix finds the tree where it was moved to"; \
	cp -R $$root/opt/wsmux $$root/moved; \
	test "$$(pkg-config --define-prefix --variable=libdir $$root/moved/lib/pkgconfig/libwsmux.pc)" = $$root/moved/lib; \
	rm -rf $$root/moved; \
	: "a multiarch LIBDIR: --define-prefix would take lib/ for the prefix,"; \
	: "so the paths are absolute there, and right"; \
	ma=$$root/ma; mal=$$ma/lib/x86_64-linux-gnu; pc=$$mal/pkgconfig/libwsmux.pc; \
	$(MAKE) --no-print-directory install PREFIX=$$ma LIBDIR=$$mal >/dev/null; \
	test "$$(pkg-config --define-prefix --variable=libdir $$pc)" = $$mal; \
	test "$$(pkg-config --define-prefix --variable=includedir $$pc)" = $$ma/include; \
	test "$$(pkg-config --variable=libdir $$pc)" = $$mal; \
	$(MAKE) --no-print-directory uninstall PREFIX=$$ma LIBDIR=$$mal >/dev/null; \
	: "cJSON without a .pc (its own Makefile installs none): the .pc names"; \
	: "-lcjson itself, not a Requires no pkg-config could then resolve"; \
	nc=$$root/nocjson; \
	PKG_CONFIG_LIBDIR=/nonexistent $(MAKE) --no-print-directory install PREFIX=$$nc >/dev/null; \
	ncf=$$(PKG_CONFIG_PATH=$$nc/lib/pkgconfig PKG_CONFIG_LIBDIR=/nonexistent \
	       pkg-config --cflags --libs libwsmux); \
	$(CC) tests/install/app.c $$ncf -o $$root/app-nocjson; \
	LD_LIBRARY_PATH=$$nc/lib $$root/app-nocjson >/dev/null; \
	$(MAKE) --no-print-directory uninstall PREFIX=$$nc >/dev/null; \
	: "the loop adapters, installed as <wsmux/adapters/*.h>: the epoll one"; \
	: "serves a round trip, built as C and as C++11; each header compiles on"; \
	: "its own, in both languages"; \
	$(CC) -D_GNU_SOURCE $(WARN) tests/install/adapter_app.c $$(pkg-config --cflags --libs libwsmux) \
	   -o $$root/adapter-app; \
	$(CXX) -std=c++11 -D_GNU_SOURCE $(INSTALL_CXX_WARN) -x c++ tests/install/adapter_app.c -x none \
	   $$(pkg-config --cflags --libs libwsmux) -o $$root/adapter-app-cxx; \
	LD_LIBRARY_PATH=$$root/opt/wsmux/lib $$root/adapter-app; \
	LD_LIBRARY_PATH=$$root/opt/wsmux/lib $$root/adapter-app-cxx; \
	hflags="-D_GNU_SOURCE -fsyntax-only $$(pkg-config --cflags libwsmux) $(CJSON_CFLAGS)"; \
	hflags="$$hflags $$(pkg-config --cflags libuv libevent 2>/dev/null)"; \
	for h in $(notdir $(ADAPTER_HEADERS)); do \
	  printf '#include <wsmux/adapters/%s>\n' $$h | $(CC) $(WARN) $$hflags -x c -; \
	  printf '#include <wsmux/adapters/%s>\n' $$h | $(CXX) -std=c++11 $(INSTALL_CXX_WARN) $$hflags -x c++ -; \
	done; \
	$(MAKE) --no-print-directory uninstall PREFIX=$$root/opt/wsmux >/dev/null; \
	test -z "$$(find $$root/opt/wsmux ! -type d)"; test ! -e $$root/opt/wsmux/include/wsmux; \
	$(MAKE) --no-print-directory check-symbols; \
	$(MAKE) --no-print-directory check-pure; \
	tests/install/check-pure-test.sh "$(CC)"; \
	echo "install-check: 1 passed, 0 failed"
