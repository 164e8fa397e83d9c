# berth — the README's two commands are `make demo` and `make test`.
GO        ?= go
BIN       ?= bin/berth
# Containers need cgo (libcontainer's nsenter) and, for seccomp, libseccomp.
TAGS      ?= seccomp
GOFLAGS_BUILD = -tags '$(TAGS)' -trimpath -buildvcs=auto
TESTFLAGS ?= -count=1 -timeout 25m

.PHONY: all build test test-unit deps vet demo demo-deploy demo-sidecar bench clean fmt

all: build

# berth-init is berth's container init (a small companion binary; berth
# looks for it next to itself and otherwise re-executes itself, slower).
# berth-docker-gen is docker-gen mode alone: berth docker-gen runs it when
# it is next to berth, at about docker-gen's memory.
build:
	@echo "make build: compiling $(BIN), berth-init and berth-docker-gen (a first build on a cold 2-core machine compiles ~700 packages: several minutes; later builds take seconds)" >&2
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/berth
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_BUILD) -o $(dir $(BIN))berth-init ./runtime/embedded/containerinit/cmd/berth-init
	$(GO) build $(GOFLAGS_BUILD) -o $(dir $(BIN))berth-docker-gen ./cmd/berth-docker-gen

# deps installs what the tests need: Debian packages and a cached Consul.
deps:
	scripts/install-deps >/dev/null

vet:
	$(GO) vet -tags '$(TAGS)' ./...

# test installs everything the tests need, then runs every test: unit,
# integration (real etcd, Consul, nginx, containers, Docker Engine).
test: deps vet
	BERTH_CONSUL=$$(scripts/install-deps --no-apt) \
	CGO_ENABLED=1 $(GO) test -tags '$(TAGS)' $(TESTFLAGS) ./...

# test-unit is the fast tier: the logic tests (named TestUnit...) of the
# registrar, the runner and the daemon, on a memory store and a scripted
# runtime; no etcd, no Docker, no root, no external process. `make test`
# runs them too, with everything else.
test-unit:
	$(GO) test -count=1 -run Unit ./registrar ./runner ./daemon

# demo is the README's main command: on a fresh machine it installs the
# build prerequisites (Debian packages; not Consul), builds berth, and runs
# the reverse-proxy quick start (needs root: containers).
demo:
	scripts/install-deps --no-consul
	$(MAKE) build
	$(MAKE) demo-deploy
	examples/nginx-proxy/run.sh

# demo-deploy: blue-green deploys under live traffic through a real nginx
# (deploy v1 → v2, rollback, a v3 whose health check fails), in a few
# lines: the time to switch and the failed requests (0). Needs root.
demo-deploy: build
	@echo "berth deploy: v1 → v2, rollback, failing v3, under load through nginx"
	$(BIN) bench deploy --replicas 3

# demo-sidecar: the store and template side alone (berth kv, render, watch);
# no root needed.
demo-sidecar: build
	examples/sidecar/run.sh

bench: build
	$(BIN) bench store

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
