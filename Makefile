# tportknockd — see README.md. `make test` is the one test command (CI runs it).
# `make` builds the release binaries as yourself (where cargo is); `sudo make
# install` and `make deb` only take them: neither ever compiles.
CARGO      ?= cargo
PREFIX     ?= /usr/local
DESTDIR    ?=
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
# Where install and deb take the binaries from (the tests install debug builds).
RELEASE_DIR ?= target/release
# Where `make deb` puts tportknockd_VERSION_ARCH.deb.
DEB_DIR ?= target/deb

# Debian packages the end-to-end tests drive for real (ufw: knock.conf(5)'s
# recipe, in a namespace with its own /etc/ufw; dpkg-dev, lintian,
# man-db and init-system-helpers: the package is built, checked, installed
# into a scratch root and its manuals read as man shows them).
TEST_DEBS := iproute2 nftables ipset iptables tcpdump knockd netcat-openbsd systemd util-linux groff-base \
	dpkg-dev lintian man-db init-system-helpers ufw

.PHONY: all build release test deps check clean demo install uninstall deb fuzz bench need-release

# `make`: the release binaries, which install and deb take.
all: release

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Installs what the tests need on a fresh Debian machine (as root), only when missing.
deps:
	@scripts/need-debs $(TEST_DEBS)

# The release build first: tests/deb.rs packages it (its `make deb` then
# finds it fresh).
test: deps release
	$(CARGO) test --all-targets
	$(CARGO) test --doc

# A door opened by a knock and closed again, in two throwaway network
# namespaces (root; installs iproute2, nftables and netcat-openbsd if missing).
# Takes the binaries `make` built, like install: root never compiles.
demo: need-release
	TPK_BIN_DIR=$(abspath $(RELEASE_DIR)) demo/demo.sh

# The binaries install takes must exist: it never builds them, as root's
# cargo is often missing or another toolchain. Sources newer than the
# binaries only earn a warning (a checkout's timestamps are not a build's).
need-release:
	@for b in tportknockd tportknock; do \
		if [ ! -x $(RELEASE_DIR)/$$b ]; then \
			echo "$(RELEASE_DIR)/$$b is missing: run 'make' first (as yourself), then this again" >&2; \
			exit 1; \
		fi; \
	done
	@newer=$$(find src Cargo.toml Cargo.lock -newer $(RELEASE_DIR)/tportknockd 2>/dev/null | head -n 1); \
	if [ -n "$$newer" ]; then \
		echo "warning: $$newer is newer than $(RELEASE_DIR)/tportknockd: run 'make' to rebuild" >&2; \
	fi

install: need-release
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(COMPLETIONDIR) $(DESTDIR)$(SYSCONFDIR)/default
	install -m 0755 $(RELEASE_DIR)/tportknockd $(DESTDIR)$(SBINDIR)/tportknockd
	install -m 0755 $(RELEASE_DIR)/tportknock $(DESTDIR)$(BINDIR)/tportknock
	install -m 0644 man/tportknockd.8 $(DESTDIR)$(MANDIR)/man8/tportknockd.8
	install -m 0644 man/knock.conf.5 $(DESTDIR)$(MANDIR)/man5/knock.conf.5
	install -m 0644 man/tportknock.1 $(DESTDIR)$(MANDIR)/man1/tportknock.1
	install -m 0644 dist/bash-completion/tportknockd $(DESTDIR)$(COMPLETIONDIR)/tportknockd
	install -m 0644 dist/bash-completion/tportknock $(DESTDIR)$(COMPLETIONDIR)/tportknock
	sed -e 's,@SBINDIR@,$(SBINDIR),g' -e 's,@SYSCONFDIR@,$(SYSCONFDIR),g' \
		dist/tportknockd.service.in >$(DESTDIR)$(UNITDIR)/tportknockd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/tportknockd.service
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/tportknockd
	@# Never overwrite a configuration someone may have edited. The new
	@# knock.conf has every event commented out: nothing opens until edited.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tportknockd/knock.conf ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/tportknockd/knock.conf"; \
	else \
		install -m 0600 dist/knock.conf $(DESTDIR)$(SYSCONFDIR)/tportknockd/knock.conf; \
		echo "installed $(DESTDIR)$(SYSCONFDIR)/tportknockd/knock.conf: edit it, check it with" \
			"'tportknockd -C $(SYSCONFDIR)/tportknockd/knock.conf', then enable the service"; \
	fi
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/default/tportknockd ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/default/tportknockd"; \
	else \
		install -m 0644 dist/tportknockd.default $(DESTDIR)$(SYSCONFDIR)/default/tportknockd; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Removes what install put there, except the configuration (and the journal
# in /var/lib/tportknockd), which hold the user's own data.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/tportknockd $(DESTDIR)$(BINDIR)/tportknock \
		$(DESTDIR)$(MANDIR)/man8/tportknockd.8 $(DESTDIR)$(MANDIR)/man5/knock.conf.5 \
		$(DESTDIR)$(MANDIR)/man1/tportknock.1 $(DESTDIR)$(UNITDIR)/tportknockd.service \
		$(DESTDIR)$(COMPLETIONDIR)/tportknockd $(DESTDIR)$(COMPLETIONDIR)/tportknock
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "left $(DESTDIR)$(SYSCONFDIR)/tportknockd/ and $(DESTDIR)$(SYSCONFDIR)/default/tportknockd in place;" \
		"remove them by hand if no longer wanted"

# The binary package, from the release build (as yourself: no root needed):
# $(DEB_DIR)/tportknockd_VERSION_ARCH.deb. dpkg-deb rather than
# cargo-deb: it comes with dpkg-dev, which Debian machines have or get with
# apt, while cargo-deb is one more tool to build from crates.io; and the
# maintainer scripts and conffiles are plain files in dist/deb/ either way.
deb: release
	scripts/build-deb $(RELEASE_DIR) $(DEB_DIR)

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
