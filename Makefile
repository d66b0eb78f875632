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
PLUGINS     := webhook prometheus pagerduty slack grafana syslog teams splunk_hec datadog otel email
# Plugins written in Python (plugins/<name>/src/app.py), built with the pinned componentize-py.
PY_PLUGINS  := chat
PLUGIN_OUT  := $(CURDIR)/build/plugins
HOSTILE     := hostile hostile_wrong_version hostile_bad_import legacy_v0_1 legacy_v0_2
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

$(VENV)/.stamp: requirements-test.txt callback/pyproject.toml plugins/sdk-python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-test.txt "ansible-core==$(ANSIBLE_CORE)"
	$(VENV)/bin/pip install --quiet -e callback
	$(VENV)/bin/pip install --quiet -e plugins/sdk-python
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

# A Python plugin is rebuilt only when its source or the SDK changed (a build takes ~10-20 s).
SDK_PY := $(wildcard plugins/sdk-python/herald_sdk/*.py plugins/sdk-python/herald_sdk/wit/*.wit plugins/sdk-python/herald_sdk/wit/deps/*.wit) $(wildcard wit/v0.3.0/*.wit)
$(PLUGIN_OUT)/%.wasm: plugins/%/src/*.py $(SDK_PY) | $(VENV)/.stamp
	$(VENV)/bin/python -m herald_sdk.build plugins/$*/src/app.py -o $@

.PHONY: python-plugins
python-plugins: $(foreach p,$(PY_PLUGINS),$(PLUGIN_OUT)/$(p).wasm) ## build the Python plugins (componentize-py, offline) into build/plugins/

.PHONY: hostile
hostile: ## build the hostile test components (tests/hostile) into build/hostile/
	rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	cd tests/hostile && CARGO_TARGET_DIR=$(PLUGIN_TARGET_DIR) cargo build --release --locked --target wasm32-wasip2
	mkdir -p $(HOSTILE_OUT)
	for p in $(HOSTILE); do cp $(PLUGIN_TARGET_DIR)/wasm32-wasip2/release/herald_$$p.wasm $(HOSTILE_OUT)/$$p.wasm; done

.PHONY: build
build: host plugins python-plugins venv ## everything the demo needs

.PHONY: build-test
build-test: build hostile ## everything the tests need (adds the hostile components)

.PHONY: demo
demo: build ## run examples/playbooks/site.yml through the host to a local webhook sink
	$(VENV)/bin/python examples/demo.py

.PHONY: test
test: build-test venv-old ## run every test: Rust unit and integration tests, callback tests, end-to-end tests
	cargo test --release --locked --workspace
	cd plugins && CARGO_TARGET_DIR=$(PLUGIN_TARGET_DIR) cargo test --locked --target $$(rustc -vV | sed -n 's/^host: //p')
	$(VENV)/bin/pytest -q callback/tests plugins/sdk-python/tests plugins/testing $(foreach p,$(PY_PLUGINS),plugins/$(p)/tests)
	ANSIBLE_PLAYBOOK=$(CURDIR)/$(VENV_OLD)/bin/ansible-playbook $(VENV)/bin/pytest -q callback/tests
	$(VENV)/bin/pytest -q tests

# Where `make install` puts things (GNU conventions; DESTDIR stages them).
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
SYSCONFDIR  ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
PLUGINDIR   ?= $(LIBDIR)/herald/plugins
UNITDIR     ?= $(LIBDIR)/systemd/system
STATEDIR    ?= /var/lib/herald
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
PACKAGING   := host/packaging
DEB_STAGE   := $(CURDIR)/build/deb/root
SUBST       := sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
                   -e 's|@PLUGINDIR@|$(PLUGINDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g'

.PHONY: dist
dist: host plugins python-plugins collection ## build everything `make install` installs (run it as yourself, not root)

.PHONY: install
install: ## install herald, its plugins, config, unit, man pages, completions (PREFIX, DESTDIR; after `make dist`)
	@for f in $(HERALD_BIN) $(foreach p,$(PLUGINS) $(PY_PLUGINS),$(PLUGIN_OUT)/$(p).wasm); do \
	  [ -f $$f ] || { echo "make install: $$f is missing: run 'make dist' first (as yourself, not root)"; exit 1; }; done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(SYSCONFDIR)/herald \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DATADIR)/herald \
	  $(DESTDIR)$(DATADIR)/doc/herald $(DESTDIR)$(DATADIR)/bash-completion/completions \
	  $(DESTDIR)$(DATADIR)/zsh/site-functions $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 0755 -s $(HERALD_BIN) $(DESTDIR)$(BINDIR)/herald
	for p in $(PLUGINS) $(PY_PLUGINS); do install -m 0644 $(PLUGIN_OUT)/$$p.wasm $(DESTDIR)$(PLUGINDIR)/$$p.wasm; done
	$(SUBST) $(PACKAGING)/herald.toml.in > $(DESTDIR)$(DATADIR)/doc/herald/herald.toml.example
	@# An edited config is never overwritten; the example beside the docs is.
	if [ -e $(DESTDIR)$(SYSCONFDIR)/herald/herald.toml ]; then \
	  echo "make install: keeping $(DESTDIR)$(SYSCONFDIR)/herald/herald.toml (the new example: $(DATADIR)/doc/herald/herald.toml.example)"; \
	else install -m 0644 $(DESTDIR)$(DATADIR)/doc/herald/herald.toml.example $(DESTDIR)$(SYSCONFDIR)/herald/herald.toml; fi
	$(SUBST) $(PACKAGING)/herald.service.in > $(DESTDIR)$(UNITDIR)/herald.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/herald.service
	$(DESTDIR)$(BINDIR)/herald man --dir $(DESTDIR)$(MANDIR)/man1
	$(DESTDIR)$(BINDIR)/herald completions bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/herald
	$(DESTDIR)$(BINDIR)/herald completions zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_herald
	$(DESTDIR)$(BINDIR)/herald completions fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/herald.fish
	install -m 0644 LICENSE README.md $(DESTDIR)$(DATADIR)/doc/herald/
	install -m 0644 callback/README.md $(DESTDIR)$(DATADIR)/doc/herald/callback.md
	@if ls build/collection/herald-events-*.tar.gz >/dev/null 2>&1; then \
	  echo install -m 0644 build/collection/herald-events-*.tar.gz $(DESTDIR)$(DATADIR)/herald/; \
	  install -m 0644 build/collection/herald-events-*.tar.gz $(DESTDIR)$(DATADIR)/herald/; \
	else echo "make install: no callback collection tarball (make collection); skipped"; fi

.PHONY: uninstall
uninstall: ## remove what `make install` installed (the config in SYSCONFDIR is kept)
	rm -f $(DESTDIR)$(BINDIR)/herald $(DESTDIR)$(UNITDIR)/herald.service $(DESTDIR)$(MANDIR)/man1/herald.1 \
	  $(DESTDIR)$(MANDIR)/man1/herald-*.1 $(DESTDIR)$(DATADIR)/bash-completion/completions/herald \
	  $(DESTDIR)$(DATADIR)/zsh/site-functions/_herald $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/herald.fish
	rm -rf $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(DATADIR)/herald $(DESTDIR)$(DATADIR)/doc/herald

# The Debian package is the `make install` tree for /usr, plus the control
# files of host/packaging/debian, built with dpkg-deb (host/packaging/README.md
# says why not cargo-deb).
DEB_ARCH    = $(shell dpkg --print-architecture)
DEB_FILE    = build/herald_$(VERSION)_$(DEB_ARCH).deb

.PHONY: deb
deb: dist ## build the Debian package into build/ (dpkg-deb, from a `make install` tree)
	rm -rf $(DEB_STAGE) && mkdir -p $(DEB_STAGE)/DEBIAN
	$(MAKE) --no-print-directory install DESTDIR=$(DEB_STAGE) PREFIX=/usr SYSCONFDIR=/etc \
	  PLUGINDIR=/usr/lib/herald/plugins UNITDIR=/usr/lib/systemd/system STATEDIR=/var/lib/herald
	rm $(DEB_STAGE)/usr/share/doc/herald/LICENSE
	printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: herald\n\nFiles: *\nCopyright: the Herald authors\nLicense: Apache-2.0\n On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n' \
	  > $(DEB_STAGE)/usr/share/doc/herald/copyright
	gzip -9n $(DEB_STAGE)/usr/share/man/man1/*.1
	install -m 0644 $(PACKAGING)/debian/conffiles $(DEB_STAGE)/DEBIAN/conffiles
	install -m 0755 $(PACKAGING)/debian/postinst $(PACKAGING)/debian/prerm $(PACKAGING)/debian/postrm $(DEB_STAGE)/DEBIAN/
	@# libc6 at least as new as the newest glibc symbol version the binary uses.
	glibc=$$(objdump -T $(DEB_STAGE)/usr/bin/herald | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1); \
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@ARCH@|$(DEB_ARCH)|' -e "s|@DEPENDS@|libc6 (>= $$glibc), libgcc-s1|" \
	  -e "s|@SIZE@|$$(du -sk --exclude=DEBIAN $(DEB_STAGE) | cut -f1)|" $(PACKAGING)/debian/control.in > $(DEB_STAGE)/DEBIAN/control
	dpkg-deb --root-owner-group -Zxz --build $(DEB_STAGE) $(DEB_FILE)
	@echo "built $(DEB_FILE)"

.PHONY: bench bench-quick
bench: build ## the benchmark suite at full size (bench/README.md); writes BENCHMARKS.md
	bench/build.sh && $(PYTHON) bench/run.py --size full
bench-quick: build ## the benchmark suite at quick sizes (a few minutes); writes BENCHMARKS.md
	bench/build.sh && $(PYTHON) bench/run.py --size quick

.PHONY: fmt
fmt: ## format the Rust code
	cargo fmt --all
	cd plugins && cargo fmt --all

.PHONY: lint
lint: ## clippy over the host's and the plugins' workspaces, warnings as errors (not in `make test`: a newer clippy may add lints)
	cargo clippy --release --workspace --all-targets -- -D warnings
	cd plugins && CARGO_TARGET_DIR=$(PLUGIN_TARGET_DIR) cargo clippy --locked --workspace --all-targets --target $$(rustc -vV | sed -n 's/^host: //p') -- -D warnings

.PHONY: clean
clean:
	rm -rf build $(VENV)
	cargo clean
