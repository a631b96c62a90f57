# purifyd — the two commands the README documents are `make run` and `make test`.
SHELL := /bin/bash
PREFIX ?= /usr/local
SWIFT ?= swift
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := libdnnl-dev libjpeg-dev libpng-dev zlib1g-dev libinotifytools0-dev libsystemd-dev pkg-config python3-venv

DATASET ?= mnist
TRAIN := PYTHONPATH=training $(PY) -m purifyd_train

.PHONY: deps debs venv build release test test-swift test-python run clean train evaluate evaluate-purify install-daemon-files check-systemd

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
	$(MAKE) test-python
	$(MAKE) test-swift

test-python:
	$(PY) -m pytest -q training/tests

test-swift:
	$(SWIFT) test

# Training and evaluation (training/README.md): `make train DATASET=fashion-mnist`, then
# `make evaluate DATASET=fashion-mnist` (QUICK=1 for the small version under training/runs/).
train: venv
	$(TRAIN) classifiers --dataset $(DATASET)
	$(TRAIN) pairs --dataset $(DATASET)
	$(TRAIN) gan --dataset $(DATASET) $(GAN_ARGS)
	$(TRAIN) export --dataset $(DATASET)

evaluate: venv
	$(TRAIN) evaluate --dataset $(DATASET) $(if $(QUICK),--quick,)

# The evaluation's end-to-end mode: a PGD test set as PNGs through the `purify` CLI (issue 4).
evaluate-purify: venv
	$(SWIFT) build --product purify
	$(TRAIN) evaluate --dataset $(DATASET) --n 500 --through-purify $$($(SWIFT) build --show-bin-path)/purify

# The daemon's systemd unit, sysusers and tmpfiles snippets and example configuration, in the
# places systemd searches under /usr/local (an existing configuration is never overwritten).
UNIT_DIR ?= $(PREFIX)/lib/systemd/system
SYSUSERS_DIR ?= $(PREFIX)/lib/sysusers.d
TMPFILES_DIR ?= $(PREFIX)/lib/tmpfiles.d
CONFIG_DIR ?= /etc/purifyd

install-daemon-files:
	install -D -m 0644 systemd/purifyd.service $(DESTDIR)$(UNIT_DIR)/purifyd.service
	install -D -m 0644 systemd/purifyd.sysusers $(DESTDIR)$(SYSUSERS_DIR)/purifyd.conf
	install -D -m 0644 systemd/purifyd.tmpfiles $(DESTDIR)$(TMPFILES_DIR)/purifyd.conf
	test -e $(DESTDIR)$(CONFIG_DIR)/purifyd.toml || install -D -m 0644 etc/purifyd/purifyd.toml $(DESTDIR)$(CONFIG_DIR)/purifyd.toml

# `systemd-analyze verify` insists that ExecStart's binary exists: check a copy of the unit
# pointing at /bin/true, then print the exposure score.
check-systemd:
	@tmp=$$(mktemp -d) && sed 's|/usr/local/bin/purifyd|/bin/true|' systemd/purifyd.service > $$tmp/purifyd.service && \
	systemd-analyze verify $$tmp/purifyd.service && \
	systemd-analyze security --offline=yes $$tmp/purifyd.service | tail -1; status=$$?; rm -rf $$tmp; exit $$status

clean:
	rm -rf .build var

# Engine benchmark: PurifyEngine vs ONNX Runtime on the ngf=64 residual U-Net (bench/engine/README.md).
BENCH_THREADS ?= $(shell nproc)
.PHONY: bench-engine
bench-engine: venv
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
