# usage-sync: `make` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO      ?= go
PKG     := github.com/usage-sync/usage-sync
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
LDFLAGS := -s -w -X $(PKG)/internal/cli.version=$(VERSION) -X $(PKG)/internal/cli.commit=$(COMMIT)
# Sets TEST_DATABASE_URL in the recipe's shell, starting PostgreSQL if it is down. (Not a bare
# eval "$$(...)": that would swallow the script's failure.)
WITH_PG := pg=$$(scripts/pg.sh) && eval "$$pg" && echo "TEST_DATABASE_URL=$$TEST_DATABASE_URL"

.PHONY: help build test bench bench-scale demo lint migrate image image-test clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/usage-sync and bin/upstream-sim (version from git describe)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/usage-sync ./cmd/upstream-sim

test: ## go vet and the race-enabled tests against a real PostgreSQL (started if needed), deploy/ included, then image-test
	@$(WITH_PG) && set -x && $(GO) vet ./... && $(GO) test -race -count=1 ./... \
	  && cd deploy && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory image-test

bench: ## benchmarks against a real PostgreSQL (started if needed), except the scale scenarios
	@$(WITH_PG) && set -x && $(GO) test -run '^$$' -bench . -skip '^BenchmarkScale' -benchmem ./...

# The scale scenarios run bin/usage-sync --once as child processes; SCALE=0.1 shrinks every
# population for a quick pass, SCALE_BENCH=BenchmarkScaleReplicas runs one scenario. The raw output
# (with benchstat metrics) stays in .tmp/bench-scale.txt.
SCALE_BENCH ?= BenchmarkScale
bench-scale: build ## the scale scenarios (internal/scalebench), one table row per --once run; SCALE=0.1 for a quick pass
	@$(WITH_PG) && mkdir -p .tmp && set -x && \
	  SCALE_BIN=$(CURDIR)/bin/usage-sync $(GO) test -run '^$$' -bench '$(SCALE_BENCH)' -benchtime 1x -timeout 2h \
	    ./internal/scalebench/ | tee .tmp/bench-scale.txt
	@echo; echo "SCALE=$${SCALE:-1} on $$(nproc) cores, $$(date -u +%FT%TZ), $$(git describe --always --dirty)"; \
	  grep '^|' .tmp/bench-scale.txt | awk '!seen[$$0]++'

demo: ## sync a simulated upstream into a fresh database and show the tables (scripts/demo.sh)
	scripts/demo.sh

lint: ## gofmt, go vet, staticcheck (fetched through the module proxy on first use), promtool check rules
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd deploy && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@command -v promtool >/dev/null || { echo "promtool is missing: apt-get install prometheus"; exit 1; }
	promtool check rules deploy/prometheus/alerts.yaml

migrate: build ## apply the schema to DATABASE_URL
	@[ -n "$${DATABASE_URL:-}" ] || { echo "set DATABASE_URL to the database to migrate"; exit 2; }
	bin/usage-sync migrate

# IMAGE names the worker image (the simulator's is $(IMAGE)-upstream-sim); ENGINE=docker|buildah
# forces the engine. See docs/operations.md, "The container image".
IMAGE ?= usage-sync
image: ## build deploy/Dockerfile's two images (worker, upstream-sim) with docker if an engine answers, else buildah
	IMAGE='$(IMAGE)' VERSION='$(VERSION)' COMMIT='$(COMMIT)' scripts/image.sh

image-test: ## build both images with buildah (stand-in bases if the registries are out of reach) and run them against a fresh database
	@$(WITH_PG) && IMAGE='$(IMAGE)' VERSION='$(VERSION)' COMMIT='$(COMMIT)' GO='$(GO)' scripts/image-test.sh

clean: ## remove bin/ and .tmp/ (stopping the throwaway PostgreSQL first)
	scripts/pg.sh stop
	rm -rf bin .tmp
