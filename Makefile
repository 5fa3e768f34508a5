# httpsrv: build, install and try the library with make.
#
#   make                          cargo build --release (library, header, httpsrvd)
#   make examples                 the example modules in c_examples/build/*.so and the example
#                                 program c_examples/build/tls_host (links libhttpsrv.a)
#   make demo [DEMO_ARGS=...]     build everything and serve the demo (scripts/demo.sh)
#   make test                     every test (scripts/test.sh)
#   sudo make install             into /usr/local (PREFIX=..., DESTDIR=... for staging)
#   sudo make uninstall           removes what install put there
#
# install puts, under $(DESTDIR)$(PREFIX):
#   lib/libhttpsrv.so.$(VERSION), with the symlinks libhttpsrv.so.$(MAJOR) (the soname) and
#   libhttpsrv.so; lib/libhttpsrv.a; include/httpsrv.h; lib/pkgconfig/httpsrv.pc;
#   bin/httpsrvd. Then, e.g.:
#     cc -Wall -o myhost myhost.c $(pkg-config --cflags --libs httpsrv)
#     cc -Wall -fPIC -shared -o mymodule.so mymodule.c $(pkg-config --cflags httpsrv)
# (a module only needs the header: its host provides the httpsrv_* symbols).

PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

CARGO    ?= cargo
INSTALL  ?= install
LDCONFIG ?= ldconfig
DEMO_ARGS ?=

# The version of the [package] in Cargo.toml, e.g. 0.1.0, and its major number (the soname's).
VERSION := $(shell awk -F'"' '/^\[/ { pkg = ($$0 == "[package]") } \
                              pkg && /^version *=/ { print $$2; exit }' Cargo.toml)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))

# Where cargo puts its output (CARGO_TARGET_DIR, if set, moves it).
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
RELEASE    := $(TARGET_DIR)/release

SONAME  := libhttpsrv.so.$(MAJOR)
REALLIB := libhttpsrv.so.$(VERSION)

# In httpsrv.pc, paths under PREFIX are written relative to ${prefix}.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

.PHONY: all build examples demo test install uninstall clean print-version

all: build

# cargo decides what to rebuild; when another cargo (say `cargo test`) holds the build
# directory, this one waits for it ("Blocking waiting for file lock"). Without cargo on PATH
# (`sudo make install` often runs without the user's ~/.cargo/bin), an existing release
# build is used as it is: run `make` first as yourself.
build:
	@test -n "$(VERSION)" || { echo "make: no version in Cargo.toml" >&2; exit 1; }
	@if command -v $(CARGO) >/dev/null 2>&1; then \
		echo "$(CARGO) build --release"; $(CARGO) build --release; \
	elif [ -f "$(RELEASE)/libhttpsrv.so" ] && [ -f "$(RELEASE)/libhttpsrv.a" ] && \
	     [ -f "$(RELEASE)/httpsrvd" ]; then \
		echo "make: $(CARGO) not found; using the existing build in $(RELEASE)"; \
	else \
		echo "make: $(CARGO) not found and no release build in $(RELEASE): run make as the" \
		     "user who has Rust first, then make install" >&2; exit 1; \
	fi

examples: build
	$(MAKE) -C c_examples HTTPSRV_LIBDIR=$(abspath $(RELEASE))

demo:
	scripts/demo.sh $(DEMO_ARGS)

test:
	scripts/test.sh

print-version:
	@echo $(VERSION)

install: build
	$(INSTALL) -d "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" \
		"$(DESTDIR)$(PKGCONFIGDIR)" "$(DESTDIR)$(BINDIR)"
	$(INSTALL) -m 0755 "$(RELEASE)/libhttpsrv.so" "$(DESTDIR)$(LIBDIR)/$(REALLIB)"
	ln -sf "$(REALLIB)" "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf "$(SONAME)" "$(DESTDIR)$(LIBDIR)/libhttpsrv.so"
	$(INSTALL) -m 0644 "$(RELEASE)/libhttpsrv.a" "$(DESTDIR)$(LIBDIR)/libhttpsrv.a"
	$(INSTALL) -m 0644 include/httpsrv.h "$(DESTDIR)$(INCLUDEDIR)/httpsrv.h"
	sed -e 's|@PREFIX@|$(PREFIX)|g' \
	    -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|g' \
	    -e 's|@VERSION@|$(VERSION)|g' \
	    httpsrv.pc.in > "$(DESTDIR)$(PKGCONFIGDIR)/httpsrv.pc.tmp"
	mv -f "$(DESTDIR)$(PKGCONFIGDIR)/httpsrv.pc.tmp" "$(DESTDIR)$(PKGCONFIGDIR)/httpsrv.pc"
	chmod 0644 "$(DESTDIR)$(PKGCONFIGDIR)/httpsrv.pc"
	$(INSTALL) -m 0755 "$(RELEASE)/httpsrvd" "$(DESTDIR)$(BINDIR)/httpsrvd"
# Refresh the dynamic linker's cache when installing for real as root (LDCONFIG=: skips it).
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null 2>&1; then \
		echo "$(LDCONFIG)"; $(LDCONFIG) || true; \
	fi

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/$(REALLIB)" "$(DESTDIR)$(LIBDIR)/$(SONAME)" \
		"$(DESTDIR)$(LIBDIR)/libhttpsrv.so" "$(DESTDIR)$(LIBDIR)/libhttpsrv.a" \
		"$(DESTDIR)$(INCLUDEDIR)/httpsrv.h" "$(DESTDIR)$(PKGCONFIGDIR)/httpsrv.pc" \
		"$(DESTDIR)$(BINDIR)/httpsrvd"

clean:
	$(CARGO) clean
	$(MAKE) -C c_examples clean
