# herd — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/herd

.PHONY: run test build vet gotest sdk sdk-test e2e bench chaos fuzz clean deps-node deps-browser

build:
	$(GO) build -o $(BIN) ./cmd/herd

## run: build and start the all-in-one pipeline (embedded NATS, Postgres from DATABASE_URL or a private cluster under ./data)
run: build
	./$(BIN) up

## test: everything the project checks
test: vet gotest

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

gotest:
	$(GO) test -count=1 -timeout 12m ./...

clean:
	rm -rf bin
