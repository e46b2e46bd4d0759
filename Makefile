# herd — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/herd

.PHONY: run build test vet gotest sdk sdk-test e2e console console-e2e bench chaos memtest fuzz clean services

build:
	$(GO) build -o $(BIN) ./cmd/herd

## run: build and start the all-in-one pipeline (embedded NATS, Postgres from DATABASE_URL or a private cluster under ./data)
run: build
	./$(BIN) up

## test: everything the project checks — Go (unit, integration, process and chaos tests against
## real Postgres and NATS), the SDK's unit tests, and the browser tests in Debian's Chromium.
test: services vet gotest sdk-test e2e

## services: the machine's Postgres must answer on 127.0.0.1:5432 (tests create their own databases on it).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
		echo "starting the local PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -n | tail -1) main start; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	@command -v node >/dev/null || { echo "node is required (Node 20)"; exit 1; }

## vet: gofmt, go vet, and go.mod/go.sum tidy (direct dependencies listed as direct)
vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result ('go mod tidy -diff' shows what changes)"; exit 1; }
	$(GO) vet ./...

gotest:
	$(GO) test -count=1 -timeout 14m ./...

## sdk: rebuild sdk-js/dist (committed; embedded in the binary)
sdk:
	cd sdk-js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && node scripts/build.mjs

sdk-test:
	bash sdk-js/scripts/test.sh

e2e:
	bash sdk-js/scripts/e2e.sh
	bash console/web/scripts/e2e.sh

## console: rebuild console/web/dist (the console's web app; committed; embedded in the binary)
console:
	cd console/web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && node build.mjs

## console-e2e: the console's browser tests alone
console-e2e:
	bash console/web/scripts/e2e.sh

## bench: end-to-end figures against raw COPY and a naive baseline (about 3 min; BENCH_QUICK=1: about 2 min; PROFILE=1: CPU profiles in bench/profiles)
bench:
	$(GO) run ./bench/cmd/herdbench --json bench/results.json $(if $(BENCH_QUICK),--quick) $(if $(PROFILE),--profile-dir bench/profiles)
	$(GO) test -run '^$$' -bench 'BenchmarkDecode|BenchmarkEncode|BenchmarkCopy' -benchmem ./collector ./writer

## chaos: kill and restart herd's components under load; one line per fault (the short form runs in make test)
chaos:
	$(GO) test -tags chaos -count=1 -v -run TestChaosFull -timeout 30m ./chaos

## memtest: herd up under a 128 MiB budget, flooded (also part of make test; HERD_MEMTEST_LIMIT=200MiB for another budget)
memtest:
	$(GO) test -count=1 -v -run '^TestUpHoldsMemoryBudget$$' ./cmd/herd

## fuzz: each fuzz target for FUZZTIME (default 60s)
FUZZTIME ?= 60s
fuzz:
	@for pkg in ./collector/ ./stream/; do for t in $$($(GO) test -list '^Fuzz' $$pkg | grep ^Fuzz); do \
		echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done; done

clean:
	rm -rf bin
