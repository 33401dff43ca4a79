# tportknockd — see README.md. `make test` is the one test command (CI runs it).
CARGO      ?= cargo
PREFIX     ?= /usr/local
DESTDIR    ?=
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
# Where install takes the binaries from (the tests install debug builds).
RELEASE_DIR ?= target/release

# Debian packages the end-to-end tests drive for real.
TEST_DEBS := iproute2 nftables ipset iptables tcpdump knockd netcat-openbsd systemd util-linux groff-base

.PHONY: all build release test deps check clean demo install uninstall fuzz bench

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Installs what the tests need on a fresh Debian machine (as root), only when missing.
deps:
	@scripts/need-debs $(TEST_DEBS)

test: deps
	$(CARGO) test --all-targets
	$(CARGO) test --doc

# A door opened by a knock and closed again, in two throwaway network
# namespaces (root; installs iproute2, nftables and netcat-openbsd if missing).
demo: release
	demo/demo.sh

install: release
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(UNITDIR)
	install -m 0755 $(RELEASE_DIR)/tportknockd $(DESTDIR)$(SBINDIR)/tportknockd
	install -m 0755 $(RELEASE_DIR)/tportknock $(DESTDIR)$(BINDIR)/tportknock
	install -m 0644 man/tportknockd.8 $(DESTDIR)$(MANDIR)/man8/tportknockd.8
	install -m 0644 man/knock.conf.5 $(DESTDIR)$(MANDIR)/man5/knock.conf.5
	install -m 0644 man/tportknock.1 $(DESTDIR)$(MANDIR)/man1/tportknock.1
	sed -e 's,@SBINDIR@,$(SBINDIR),g' -e 's,@SYSCONFDIR@,$(SYSCONFDIR),g' \
		dist/tportknockd.service.in >$(DESTDIR)$(UNITDIR)/tportknockd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/tportknockd.service
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/tportknockd
	@# Never overwrite a configuration someone may have edited.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tportknockd/knock.conf ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/tportknockd/knock.conf"; \
	else \
		install -m 0600 knock.conf.example $(DESTDIR)$(SYSCONFDIR)/tportknockd/knock.conf; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Removes what install put there, except the configuration (and the journal
# in /var/lib/tportknockd), which hold the user's own data.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/tportknockd $(DESTDIR)$(BINDIR)/tportknock \
		$(DESTDIR)$(MANDIR)/man8/tportknockd.8 $(DESTDIR)$(MANDIR)/man5/knock.conf.5 \
		$(DESTDIR)$(MANDIR)/man1/tportknock.1 $(DESTDIR)$(UNITDIR)/tportknockd.service
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "left $(DESTDIR)$(SYSCONFDIR)/tportknockd/ in place; remove it by hand if no longer wanted"

# tportknockd and knockd side by side (root, a few minutes, quiet machine):
# writes BENCHMARKS.md. Not part of `test`.
bench:
	bench/run.sh

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Each fuzz target for FUZZ_SECONDS; new inputs go to fuzz/target/corpus,
# the checked-in seeds (fuzz/corpus) are only read. cargo-fuzz needs nightly
# flags: RUSTC_BOOTSTRAP lets the stable toolchain accept them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := config decode decode_match
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/target/corpus/$$t && \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir fuzz $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

clean:
	$(CARGO) clean
