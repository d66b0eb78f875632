# Herald: `make demo` runs a real playbook's events through the host to a sink;
# `make test` builds every artifact once (release profile) and runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
ANSIBLE_CORE ?= 2.19.14
# An older supported ansible-core line the callback is also tested against.
ANSIBLE_CORE_OLD ?= 2.16.19
VENV_OLD    ?= .venv-2.16
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
HERALD_BIN  := $(TARGET_DIR)/release/herald
PLUGIN_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/plugins/target)
PLUGINS     := webhook prometheus pagerduty slack grafana syslog
PLUGIN_OUT  := $(CURDIR)/build/plugins
HOSTILE     := hostile hostile_wrong_version hostile_bad_import legacy_v0_1
HOSTILE_OUT := $(CURDIR)/build/hostile

export HERALD_BIN
export HERALD_PLUGIN_DIR := $(PLUGIN_OUT)
export HERALD_HOSTILE_DIR := $(HOSTILE_OUT)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## install the wasm target and the Python virtualenv
	rustup target add wasm32-wasip2
	$(MAKE) venv

$(VENV)/.stamp: requirements-test.txt callback/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-test.txt "ansible-core==$(ANSIBLE_CORE)"
	$(VENV)/bin/pip install --quiet -e callback
	touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## Python virtualenv with the pinned ansible-core, pytest and the callback

$(VENV_OLD)/.stamp:
	$(PYTHON) -m venv $(VENV_OLD)
	$(VENV_OLD)/bin/pip install --quiet "ansible-core==$(ANSIBLE_CORE_OLD)"
	touch $@

.PHONY: venv-old
venv-old: $(VENV_OLD)/.stamp ## a second virtualenv with the older ansible-core line, for the callback tests

.PHONY: collection
collection: venv ## build the herald.events Ansible collection into build/collection
	$(VENV)/bin/python callback/build_collection.py --build build/collection --ansible-galaxy $(VENV)/bin/ansible-galaxy

.PHONY: host
host: ## build the herald binary (release profile, shared with the tests)
	cargo build --release --locked -p herald

.PHONY: plugins
plugins: ## build every plugin component for wasm32-wasip2 into build/plugins/
	rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	cd plugins && CARGO_TARGET_DIR=$(PLUGIN_TARGET_DIR) cargo build --release --locked --target wasm32-wasip2
	mkdir -p $(PLUGIN_OUT)
	for p in $(PLUGINS); do cp $(PLUGIN_TARGET_DIR)/wasm32-wasip2/release/herald_$$p.wasm $(PLUGIN_OUT)/$$p.wasm; done

.PHONY: hostile
hostile: ## build the hostile test components (tests/hostile) into build/hostile/
	rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	cd tests/hostile && CARGO_TARGET_DIR=$(PLUGIN_TARGET_DIR) cargo build --release --locked --target wasm32-wasip2
	mkdir -p $(HOSTILE_OUT)
	for p in $(HOSTILE); do cp $(PLUGIN_TARGET_DIR)/wasm32-wasip2/release/herald_$$p.wasm $(HOSTILE_OUT)/$$p.wasm; done

.PHONY: build
build: host plugins venv ## everything the demo needs

.PHONY: build-test
build-test: build hostile ## everything the tests need (adds the hostile components)

.PHONY: demo
demo: build ## run examples/playbooks/site.yml through the host to a local webhook sink
	$(VENV)/bin/python examples/demo.py

.PHONY: test
test: build-test venv-old ## run every test: Rust unit and integration tests, callback tests, end-to-end tests
	cargo test --release --locked -p herald
	cd plugins && CARGO_TARGET_DIR=$(PLUGIN_TARGET_DIR) cargo test --locked --target $$(rustc -vV | sed -n 's/^host: //p')
	$(VENV)/bin/pytest -q callback/tests
	ANSIBLE_PLAYBOOK=$(CURDIR)/$(VENV_OLD)/bin/ansible-playbook $(VENV)/bin/pytest -q callback/tests
	$(VENV)/bin/pytest -q tests

.PHONY: bench bench-quick
bench: build ## the benchmark suite at full size (bench/README.md); writes BENCHMARKS.md
	bench/build.sh && $(PYTHON) bench/run.py --size full
bench-quick: build ## the benchmark suite at quick sizes (a few minutes); writes BENCHMARKS.md
	bench/build.sh && $(PYTHON) bench/run.py --size quick

.PHONY: fmt
fmt: ## format the Rust code
	cargo fmt --all
	cd plugins && cargo fmt --all

.PHONY: clean
clean:
	rm -rf build $(VENV)
	cargo clean
