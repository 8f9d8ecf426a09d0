# Petrel — build, run and test. `make run` and `make test` install what a
# fresh Debian machine lacks first (see docs/development.md).

# Keep compiled dependencies outside the clone so fresh clones on the same
# machine reuse them.
CARGO_TARGET_DIR ?= $(HOME)/.cache/petrel/target
export CARGO_TARGET_DIR
# Above this size (KiB) the shared target dir is wiped before building.
TARGET_DIR_LIMIT_KIB ?= 20000000

# iproute2: `ss`, with which a test reads a listening socket's backlog.
# openssl: the DKIM tests generate their keys with it.
# redis-server: the tests of limits shared between nodes start their own.
# chromium, chromium-driver: the console tests drive a headless browser.
APT_PACKAGES := librocksdb-dev libclang1-14 libclang-common-14-dev iproute2 openssl redis-server chromium chromium-driver
# Independent verifiers the tests run: dkimpy (with dnspython, and PyNaCl
# for ed25519) checks the DKIM signatures Petrel makes.
PY_MODULES := dkim:dkimpy dns:dnspython nacl:pynacl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
POLICY ?= policy/init.lua

.PHONY: run test build deps py-deps lint fmt sink bounded-cache

run: deps build
	$(CARGO_TARGET_DIR)/debug/petrel serve --policy $(POLICY)

test: deps py-deps bounded-cache
	cargo build --workspace --all-targets
	tests/openapi/schemathesis.sh $(CARGO_TARGET_DIR)/debug/petrel
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi
	cargo build --release -p petrel -p petrel-testkit --bins
	tests/smoke/release.sh $(CARGO_TARGET_DIR)

build: deps
	cargo build --workspace

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
	@command -v cargo-machete >/dev/null 2>&1 || cargo install --locked --quiet cargo-machete
	cargo machete
	@command -v cargo-deny >/dev/null 2>&1 || cargo install --locked --quiet cargo-deny
	cargo deny check bans

fmt:
	cargo fmt --all

# A local SMTP sink on 127.0.0.1:2526 that shows which source each message used.
sink: deps
	cargo run -q -p petrel-testkit --bin petrel-sink -- --listen 127.0.0.1:2526

# Install the system libraries the build links against, only if missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Install the Python modules the tests use, only if missing.
py-deps:
	@for pair in $(PY_MODULES); do \
		module=$${pair%%:*}; package=$${pair#*:}; \
		python3 -c "import $$module" 2>/dev/null || { echo "installing $$package from PyPI"; python3 -m pip install -q $$package; }; \
	done

bounded-cache:
	@if [ -d "$(CARGO_TARGET_DIR)" ] && [ "$$(du -sk "$(CARGO_TARGET_DIR)" | cut -f1)" -gt $(TARGET_DIR_LIMIT_KIB) ]; then \
		echo "target dir over limit; cleaning"; rm -rf "$(CARGO_TARGET_DIR)"; \
	fi
