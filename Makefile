# Activity History — run `make help` for the targets.
GO      ?= go
BIN     := bin/activityhistory
PKGS    := ./...
TESTFLAGS ?= -race -timeout 10m

.DEFAULT_GOAL := help
# gin's debug mode prints every route of every engine a test builds.
export GIN_MODE := release

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build the binary into bin/
	@echo "building $(BIN) (the first build compiles every dependency: a few minutes)"
	$(GO) build -trimpath -o $(BIN) ./cmd/activityhistory

.PHONY: run
run: build ## run the all-in-one service on 127.0.0.1:8080 (embedded JetStream; Redis when REDIS_URL is set)
	./$(BIN) serve --dev-auth

.PHONY: test
test: ## run the whole test suite (starts a throwaway redis-server when REDIS_URL is unset)
	./scripts/with-redis $(GO) test $(TESTFLAGS) $(PKGS)

.PHONY: test-long
test-long: ## long suites: soak, big volumes, cluster and process fault injection (faults/)
	AH_LONG=1 ./scripts/with-redis $(GO) test -timeout 30m $(PKGS)

.PHONY: bench
bench: build ## the service over HTTP (vegeta) beside its raw parts, 1M-activity target: one table (~15 min)
	$(GO) build -o bin/ahbench ./cmd/ahbench
	./bin/ahbench --bin $(BIN) --tools bin $(BENCHFLAGS)

.PHONY: bench-go
bench-go: ## Go micro-benchmarks (event store appends, read-model pages, HTTP handlers)
	./scripts/with-redis $(GO) test -run '^$$' -bench . -benchmem $(PKGS)

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: clean
clean: ## remove build output (not ./data)
	rm -rf bin
