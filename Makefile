# Berth's entry points. `make test` is what CI runs (through .ci/run); it installs what it needs
# on a fresh Debian 12 machine (as root), then runs every gate: fmt, clippy, the doc build, unit
# and end-to-end tests. The end-to-end suites start their own containerd and registry in private
# temp directories and never touch services the machine already runs.

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := containerd runc docker-registry protobuf-compiler libprotobuf-dev busybox-static nftables iproute2 tini gcc libc6-dev golang-github-docker-docker-dev prometheus \
	lintian rpm rpmlint packer mmdebstrap systemd-container python3-venv
# moto's server, the CloudWatch Logs emulator of the awslogs trials and bench, in a venv of its
# own made from PyPI (the tests find it here, or at BERTH_MOTO_SERVER).
MOTO_VENV ?= /opt/berth-moto
MOTO_VERSION ?= 5.1.*
export CARGO_TERM_COLOR ?= never

.PHONY: all deps test fmt-check lint unit-and-e2e package package-check systemd-test demo bench doc clean

all: test

## deps: install the system packages the build and the tests need (idempotent)
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run as root or install them)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# containerd's package enables its own service; Berth's tests never use it, so leave it be.
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	@if [ ! -x $(MOTO_VENV)/bin/moto_server ]; then \
	  echo "installing moto[server] into $(MOTO_VENV)"; \
	  /usr/bin/python3 -m venv $(MOTO_VENV) && \
	  $(MOTO_VENV)/bin/pip install -q --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'; \
	fi

## test: every gate, as CI runs it
test: deps fmt-check lint doc unit-and-e2e package-check systemd-test

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# One shared build. The crates' tests enable tokio's test-util (a dev-dependency feature), so a
# build without test targets would compile tokio and everything above it (hyper, tonic,
# containerd-client, reqwest) a second time with other features. The end-to-end suites run the
# real binaries, so they are built here together with every test target, in the feature set
# `cargo test` uses; `cargo test` then only runs them (unit tests, suites, doc tests). Likewise
# `lint` and `doc` share one checked set of dependencies (see `doc`).
unit-and-e2e:
	$(CARGO) build --workspace --bins --tests
	$(CARGO) test --workspace

## package: the .deb and .rpm (release build) in target/packages/
package: deps
	$(CARGO) build --release --workspace --bins
	packaging/build.sh target/release target/packages

## package-check: build both packages from the test build's binaries (stripped as a release
## package's are) and check them with lintian and rpmlint, and the machine-image template with
## packer validate (part of make test). The build is unit-and-e2e's (same command, same
## features), so nothing compiles twice.
PACKAGE_CHECK_DIR := target/package-check
package-check:
	$(CARGO) build --workspace --bins --tests
	rm -rf $(PACKAGE_CHECK_DIR)
	BERTH_PACKAGE_COMPRESSION=fast packaging/build.sh target/debug $(PACKAGE_CHECK_DIR)
	lintian --fail-on error,warning --tag-display-limit 0 $(PACKAGE_CHECK_DIR)/*.deb
	rpmlint --strict -c packaging/rpm/rpmlint.toml $(PACKAGE_CHECK_DIR)/*.rpm
	packer validate -var berth_deb=$$(ls $(PACKAGE_CHECK_DIR)/*.deb) packaging/packer

## systemd-test: the .deb under a real systemd: a Debian 12 root (mmdebstrap, cached under
## target/test-cache) booted with systemd-nspawn in its own network namespace; install, start,
## SIGKILL and watchdog restarts, a Berth task's journal fields, stop and upgrade with its
## container running, remove and purge (tests/systemd/nspawn.sh)
systemd-test:
	$(CARGO) build --workspace --bins --tests
	tests/systemd/nspawn.sh target/debug

## demo: Berth end to end on this machine (root): scheduler, agent, berthctl run-task
demo: deps
	$(CARGO) build --release --workspace --bins
	./target/release/berth-demo

## bench: benchmarks that print figures (release build); the last one times
## `systemctl start berth-agent` to READY=1 and to the first heartbeat at the scheduler under a
## real systemd (tests/systemd/nspawn.sh ... bench; BERTH_NSPAWN_BENCH_ROUNDS, default 10)
bench: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p berth-scheduler --bench placement
	$(CARGO) bench -p berth-tests --bench runtime --bench e2e --bench trust --bench network --bench telemetry --bench telemetry_pass --bench restart --bench image_gc --bench awslogs --bench services
	tests/systemd/nspawn.sh target/release bench $${BERTH_NSPAWN_BENCH_ROUNDS:-10}

## doc: the API documentation, with every rustdoc warning an error (part of make test). The
## examples are documented too: they take the dev-dependencies' features, so the dependencies
## checked for clippy --all-targets serve here unchanged.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --lib --bins --examples

clean:
	$(CARGO) clean
