# tportknockd — see README.md. `make test` is the one test command (CI runs it).
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=

# Debian packages the end-to-end tests drive for real.
TEST_DEBS := iproute2 nftables iptables tcpdump knockd

.PHONY: all build release test deps check clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Installs what the tests need on a fresh Debian machine (as root), only when missing.
deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: deps
	$(CARGO) test --all-targets
	$(CARGO) test --doc

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
