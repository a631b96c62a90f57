# purifyd — the two commands the README documents are `make run` and `make test`.
SHELL := /bin/bash
PREFIX ?= /usr/local
SWIFT ?= swift
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := libdnnl-dev libjpeg-dev libpng-dev zlib1g-dev python3-venv nginx

DATASET ?= mnist
TRAIN := PYTHONPATH=training $(PY) -m purifyd_train

.PHONY: deps debs venv build release test test-swift test-python test-replicas run install clean train evaluate evaluate-purify bundle install-daemon-files check-systemd

deps: debs venv

# Debian packages: installed only when one is missing (needs root, as on CI).
debs:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: training/requirements.txt training/requirements-nodeps.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r training/requirements.txt
	$(PY) -m pip install -q --no-deps -r training/requirements-nodeps.txt
	touch $@

build: debs
	$(SWIFT) build

release: debs
	$(SWIFT) build -c release

test: deps
	$(SWIFT) build --product purify
	$(MAKE) test-python PURIFY_BIN=$$($(SWIFT) build --show-bin-path)/purify
	$(MAKE) test-swift
	$(MAKE) test-replicas
	$(MAKE) test-deb
	$(MAKE) test-asan

# Three purifyd replicas behind nginx on loopback, one killed with SIGKILL under load
# (Tests/ReplicaTests): no request may fail. SWIFT_FLAGS as for run.
test-replicas: debs venv
	$(SWIFT) build $(SWIFT_FLAGS) --product purifyd
	PURIFYD_BIN=$$($(SWIFT) build $(SWIFT_FLAGS) --show-bin-path)/purifyd $(PY) -m pytest -q Tests/ReplicaTests

# PURIFY_BIN: the `purify` binary the bundle's end-to-end test runs (`make test` builds it; without it that test fails).
test-python:
	PURIFY_BIN=$(PURIFY_BIN) $(PY) -m pytest -q training/tests

test-swift:
	$(SWIFT) test

# The Swift tests under AddressSanitizer (LeakSanitizer included) and under ThreadSanitizer,
# each in a build folder of its own; Tests/Sanitizers/ holds the suppressions for the
# toolchain's own defects, each explained there. The symbolizer is named in the options, which
# the tests hand to every child they start (purifyd, purifyctl): a child started with an
# environment of its own has no PATH to find it by, and unsymbolized stacks match no suppression.
# PURIFYD_TEST_TIME_SCALE widens the bounds that tell a slow answer from a stuck one
# (Tests/PurifyTestSupport/TimeScale.swift).
LLVM_SYMBOLIZER ?= $(dir $(realpath $(shell command -v $(SWIFT))))llvm-symbolizer
SANITIZER_ENV := ASAN_OPTIONS=suppressions=$(CURDIR)/Tests/Sanitizers/asan.supp:detect_leaks=1:external_symbolizer_path=$(LLVM_SYMBOLIZER) \
  LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/Sanitizers/lsan.supp:print_suppressions=0
.PHONY: test-asan test-tsan
test-asan: deps
	$(SANITIZER_ENV) PURIFYD_TEST_TIME_SCALE=4 $(SWIFT) test --sanitize address --scratch-path .build-asan

test-tsan: deps
	TSAN_OPTIONS=halt_on_error=1:external_symbolizer_path=$(LLVM_SYMBOLIZER) PURIFYD_TEST_TIME_SCALE=4 $(SWIFT) test --sanitize thread --scratch-path .build-tsan

# The fault suite (torture/README.md): a release purifyd killed with SIGKILL 20 times during a
# 10,000-file burst, an outbox that fills up and one remounted read-only (tmpfs mounts: run as
# root), 10,000 malformed control requests and a corpus of hostile files. It prints the files lost,
# duplicated, corrupt and the temporary files left per scenario, and fails on any.
# TORTURE_ARGS="--quick" for a smoke run (minutes), "--scenario kill9" for one scenario.
TORTURE_ARGS ?=
.PHONY: torture
torture: debs venv
	$(SWIFT) build -c release --scratch-path .build-torture --product purifyd
	PYTHONPATH=torture $(PY) -m purifyd_torture --purifyd .build-torture/release/purifyd $(TORTURE_ARGS)

# libFuzzer over every parser of untrusted input, under AddressSanitizer and, for the C
# codecs, UndefinedBehaviorSanitizer (Fuzz/README.md): FUZZ_SECONDS per harness.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= codecs onnx config control
.PHONY: fuzz
fuzz: debs
	@for target in $(FUZZ_TARGETS); do \
	  (cd Fuzz && $(SWIFT) build --sanitize fuzzer --sanitize address -Xcc -fsanitize=undefined \
	    --product fuzz-$$target) || exit 1; \
	done
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" Fuzz/run.sh

# Training and evaluation (training/README.md): `make train DATASET=fashion-mnist`, then
# `make evaluate DATASET=fashion-mnist` (QUICK=1 for the small version under training/runs/).
# `make train` runs the paper's recipe (its losses, default sizes; GAN_ARGS adds gan options); the
# shipped bundles' recipes are training/recipes/<bundle>.sh.
train: venv
	$(TRAIN) classifiers --dataset $(DATASET)
	$(TRAIN) pairs --dataset $(DATASET)
	$(TRAIN) gan --dataset $(DATASET) $(GAN_ARGS)
	$(TRAIN) export --dataset $(DATASET)

evaluate: venv
	$(TRAIN) evaluate --dataset $(DATASET) $(if $(QUICK),--quick,)

# A bundle from your own data and classifier (training/README.md, "Bundles from your own data"):
# `make bundle DATA=DIR CLASSIFIER=FILE.onnx OUT=DIR [EPS=E] [QUICK=1] [BUNDLE_ARGS="--mean 0.5 --std 0.25 ..."]`.
# DIR holds one sub-folder of PNG/JPEG images per class; OUT must not exist. Exit 64 usage, 65 bad data, 66 no input.
bundle: venv
	@test -n "$(DATA)" -a -n "$(CLASSIFIER)" -a -n "$(OUT)" || { echo "usage: make bundle DATA=DIR CLASSIFIER=FILE.onnx OUT=DIR [EPS=E] [QUICK=1] [BUNDLE_ARGS=...]" >&2; exit 64; }
	$(TRAIN) bundle --data $(DATA) --classifier $(CLASSIFIER) --out $(OUT) $(if $(EPS),--eps $(EPS),) $(if $(QUICK),--quick,) $(BUNDLE_ARGS)

# The evaluation's end-to-end mode: a PGD test set as PNGs through the `purify` CLI.
evaluate-purify: venv
	$(SWIFT) build --product purify
	$(TRAIN) evaluate --dataset $(DATASET) --n 500 --through-purify $$($(SWIFT) build --show-bin-path)/purify

# Extra `swift build` options for run and install, e.g. SWIFT_FLAGS="--scratch-path .build-x".
SWIFT_FLAGS ?=
BINDIR ?= $(PREFIX)/bin
BUNDLE_DIR ?= $(PREFIX)/share/purifyd/models
# Every bundle under models/ (a folder with a bundle.toml).
BUNDLES ?= $(patsubst %/bundle.toml,%,$(wildcard models/*/bundle.toml))

# `make run`: purifyd in the foreground on var/purifyd.toml (rewritten each time), with its
# inbox, outbox, spool, state and control socket under var/ and the bundle RUN_BUNDLE.
# Ctrl-C drains what is in flight and stops it.
RUN_BUNDLE ?= models/mnist
RUN_CONFIGURATION ?= debug
RUN_VAR := $(CURDIR)/var

define RUN_CONFIG
# Written by `make run` (each run rewrites it): purifyd on the repository's var/ folder.
state_directory = "$(RUN_VAR)/state"
control_socket = "$(RUN_VAR)/run/control.sock"
drain_deadline_s = 10
log_level = "info"

[[inbox]]
name = "$(notdir $(abspath $(RUN_BUNDLE)))"
path = "$(RUN_VAR)/inbox"
outbox = "$(RUN_VAR)/outbox"
spool_dir = "$(RUN_VAR)/spool"
bundle = "$(abspath $(RUN_BUNDLE))"
endef
export RUN_CONFIG

run: debs
	@test -f $(RUN_BUNDLE)/bundle.toml || { echo "make run: no model bundle at $(RUN_BUNDLE) (models/mnist ships with the repository; or RUN_BUNDLE=DIR)" >&2; exit 66; }
	$(SWIFT) build -c $(RUN_CONFIGURATION) $(SWIFT_FLAGS) --product purifyd
	$(SWIFT) build -c $(RUN_CONFIGURATION) $(SWIFT_FLAGS) --product purifyctl
	@mkdir -p var/inbox var/outbox var/run
	@printf '%s\n' "$$RUN_CONFIG" > var/purifyd.toml
	@bin=$$($(SWIFT) build -c $(RUN_CONFIGURATION) $(SWIFT_FLAGS) --show-bin-path) && bin=$${bin#$(CURDIR)/} && \
	echo && \
	echo "purifyd $$($$bin/purifyd --version) on var/purifyd.toml, bundle $(RUN_BUNDLE)" && \
	echo "  drop PNG or JPEG files into  var/inbox/   (cp x.png var/inbox/, or write elsewhere and mv in)" && \
	echo "  purified images and reports  var/outbox/  (<name>.json, written last)" && \
	echo "  files that failed            var/spool/failed/  (<name>.error.json says why)" && \
	echo "  query it                     $$bin/purifyctl status --socket var/run/control.sock" && \
	echo "                               (also stats, metrics, pause, resume, rescan, reload, drain --exit)" && \
	echo "  stop it                      Ctrl-C (finishes the files in flight)" && \
	echo && \
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} exec $$bin/purifyd --config var/purifyd.toml

# `make install` (PREFIX=/usr/local, DESTDIR for staging): release binaries in $(BINDIR), linked
# with the Swift runtime statically (they need only the Debian libraries of `make debs`); every
# bundle under models/ in $(BUNDLE_DIR)/<name>, without the engine's test data (reference/); the
# unit, sysusers, tmpfiles and example configuration (install-daemon-files). Then:
# systemd-sysusers; systemd-tmpfiles --create; systemctl daemon-reload; systemctl enable --now purifyd.
INSTALL_BUILD = $(SWIFT) build -c release --static-swift-stdlib $(SWIFT_FLAGS)
# Strips the binaries (purifyd: 113 MB → 70 MB); INSTALL_STRIP= keeps the symbols for backtraces.
INSTALL_STRIP ?= -s
install: debs install-daemon-files
	$(INSTALL_BUILD) --product purifyd
	$(INSTALL_BUILD) --product purifyctl
	$(INSTALL_BUILD) --product purify
	@bin=$$($(INSTALL_BUILD) --show-bin-path) && \
	for program in purifyd purifyctl purify; do \
	  install -D $(INSTALL_STRIP) -m 0755 $$bin/$$program $(DESTDIR)$(BINDIR)/$$program || exit 1; \
	done
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/purifyd/README.md
	for doc in docs/*.md; do install -D -m 0644 $$doc $(DESTDIR)$(PREFIX)/share/doc/purifyd/$$(basename $$doc) || exit 1; done
	@for bundle in $(BUNDLES); do \
	  target=$(DESTDIR)$(BUNDLE_DIR)/$$(basename $$bundle); \
	  echo "installing bundle $$bundle in $$target"; \
	  rm -rf $$target && mkdir -p $$target || exit 1; \
	  for entry in $$bundle/*; do \
	    [ "$$(basename $$entry)" = reference ] || cp -R $$entry $$target/ || exit 1; \
	  done; \
	  chmod -R u=rwX,go=rX $$target || exit 1; \
	done

# The daemon's systemd unit, sysusers and tmpfiles snippets and example configuration, in the
# places systemd searches under /usr/local (an existing configuration is never overwritten).
# The unit's ExecStart and the configuration's bundle follow BINDIR and BUNDLE_DIR.
UNIT_DIR ?= $(PREFIX)/lib/systemd/system
SYSUSERS_DIR ?= $(PREFIX)/lib/sysusers.d
TMPFILES_DIR ?= $(PREFIX)/lib/tmpfiles.d
CONFIG_DIR ?= /etc/purifyd

install-daemon-files:
	sed 's|/usr/local/bin/purifyd|$(BINDIR)/purifyd|' systemd/purifyd.service | install -D -m 0644 /dev/stdin $(DESTDIR)$(UNIT_DIR)/purifyd.service
	install -D -m 0644 systemd/purifyd-http.socket $(DESTDIR)$(UNIT_DIR)/purifyd-http.socket
	install -D -m 0644 systemd/purifyd.sysusers $(DESTDIR)$(SYSUSERS_DIR)/purifyd.conf
	install -D -m 0644 systemd/purifyd.tmpfiles $(DESTDIR)$(TMPFILES_DIR)/purifyd.conf
	test -e $(DESTDIR)$(CONFIG_DIR)/purifyd.toml || \
	  sed 's|^bundle = "/usr/local/share/purifyd/models/|bundle = "$(BUNDLE_DIR)/|' etc/purifyd/purifyd.toml | \
	  install -D -m 0644 /dev/stdin $(DESTDIR)$(CONFIG_DIR)/purifyd.toml

# `systemd-analyze verify` insists that ExecStart's binary exists: check a copy of the unit
# pointing at /bin/true, then print the exposure score.
check-systemd:
	@tmp=$$(mktemp -d) && sed 's|/usr/local/bin/purifyd|/bin/true|' systemd/purifyd.service > $$tmp/purifyd.service && \
	cp systemd/purifyd-http.socket $$tmp/ && \
	systemd-analyze verify $$tmp/purifyd.service $$tmp/purifyd-http.socket && \
	systemd-analyze security --offline=yes $$tmp/purifyd.service | tail -1; status=$$?; rm -rf $$tmp; exit $$status

clean:
	rm -rf .build var

# Engine benchmark: PurifyEngine vs ONNX Runtime and OpenVINO on the shipped models and the ngf=64
# residual U-Net (bench/engine/README.md).
BENCH_THREADS ?= $(shell nproc)
.PHONY: bench-engine
bench-engine: venv
	$(PY) -m pip install -q -r bench/requirements.txt
	$(SWIFT) build -c release --scratch-path .build-engine --product purify-engine-bench
	$(PY) bench/engine/bench.py --threads $(BENCH_THREADS) --engine .build-engine/release/purify-engine-bench

# Pipeline benchmark: `purify` over 10,000 MNIST PNGs and 500 256×256 JPEGs against engine-only
# throughput at the same batch size, with peak RSS (bench/pipeline/README.md).
BENCH_BATCH ?= 16
.PHONY: bench-pipeline
bench-pipeline: venv
	$(SWIFT) build -c release --scratch-path .build-pipeline --product purify
	$(SWIFT) build -c release --scratch-path .build-pipeline --product purify-engine-bench
	$(PY) bench/pipeline/bench.py --threads $(BENCH_THREADS) --batch $(BENCH_BATCH) \
	  --purify .build-pipeline/release/purify --engine .build-pipeline/release/purify-engine-bench

# Memory benchmark: wall time and peak RSS of `purify` (12 MP and 40 MP photos, every bundle,
# --input-policy tile) and of `purifyd` (one 12 MP photo per bundle, then a burst of 64 into one
# inbox) against the unit's MemoryMax (bench/memory/README.md). BENCH_MEMORY_ARGS adds options,
# e.g. "--burst-bundles mnist fashion-mnist cifar10".
BENCH_MEMORY_ARGS ?=
# The HTTP API against the file inbox on one daemon build (bench/http/README.md); needs wrk.
BENCH_HTTP_ARGS ?=
.PHONY: bench-http
bench-http: venv
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(SWIFT) build -c release --scratch-path .build-http-bench --product purifyd
	$(PY) bench/http/bench.py --threads $(BENCH_THREADS) --purifyd .build-http-bench/release/purifyd $(BENCH_HTTP_ARGS)

.PHONY: bench-memory
bench-memory: venv
	$(SWIFT) build -c release --scratch-path .build-memory --product purify
	$(SWIFT) build -c release --scratch-path .build-memory --product purifyd
	$(PY) bench/memory/bench.py --threads $(BENCH_THREADS) \
	  --purify .build-memory/release/purify --purifyd .build-memory/release/purifyd $(BENCH_MEMORY_ARGS)

# End to end: purifyd against a Python + ONNX Runtime folder watcher doing its job
# (bench/e2e/watcher.py) on the same MNIST and CIFAR-10 files, alternating rounds in one run
# (bench/e2e/README.md). BENCH_E2E_ARGS adds options, e.g. "--files 200 --rounds 3".
BENCH_E2E_ARGS ?=
.PHONY: bench-e2e
bench-e2e: venv
	$(SWIFT) build -c release --scratch-path .build-e2e --product purifyd
	$(PY) bench/e2e/bench.py --threads $(BENCH_THREADS) --purifyd .build-e2e/release/purifyd $(BENCH_E2E_ARGS)

# Debian package: dist/purifyd_<version>_<arch>.deb (packaging/deb/build.sh: `make install` into a
# staging root with PREFIX=/usr, man pages, completions, conffile, maintainer scripts). The version
# is Sources/PurifyVersion's.
.PHONY: deb test-deb
deb: debs
	@$(MAKE) --no-print-directory debs DEB_PACKAGES="dpkg-dev"
	packaging/deb/build.sh dist

# Installs the package into a clean Debian 12 root (debootstrap, kept as var/debootstrap-bookworm.tar
# between runs) and checks it there (packaging/deb/test-install.sh).
test-deb: deb
	@$(MAKE) --no-print-directory debs DEB_PACKAGES="debootstrap"
	packaging/deb/test-install.sh $$(ls -t dist/purifyd_*.deb | head -1)
