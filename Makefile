# mailslot — every workflow is a target here; `make help` lists them.
# Targets that need PostgreSQL 18 start a local one through scripts/pg.sh.

SHELL        := bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
BIN         := bin
PG          := scripts/pg.sh
PG_PORT     ?= 55432
export MAILSLOT_PG_PORT := $(PG_PORT)
DEV_DB      := mailslot
TEST_DB     := mailslot_test
# The local development database; `make run` syncs into it.
DEV_DATABASE_URL = postgres://postgres@127.0.0.1:$(PG_PORT)/$(DEV_DB)?sslmode=disable
TEST_DATABASE_URL = postgres://postgres@127.0.0.1:$(PG_PORT)/$(TEST_DB)?sslmode=disable
# The race detector needs cgo and a C compiler; where they are missing the
# suite runs without it rather than not at all.
RACE        := $(shell [ "$$($(GO) env CGO_ENABLED 2>/dev/null)" = 1 ] && command -v cc >/dev/null 2>&1 && echo -race)
TEST_FLAGS  ?= -count=1 -timeout 30m $(RACE)
BENCH_FLAGS ?=

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build mailslot and mailslotctl into ./bin (CGO_ENABLED=0)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/mailslot ./cmd/mailslotctl

.PHONY: run dev
run: build db-start migrate ## run the edge on :8080 (outbox in ./data) syncing into local Postgres 18, the example site on :8081, Mailpit on :8025
	@echo "edge on http://127.0.0.1:8080, example site on http://127.0.0.1:8081, mail in Mailpit at http://127.0.0.1:8025, Postgres: make db-studio"
	@$(BIN)/mailslot site & site=$$!; \
	  "$$($(GO) tool -n mailpit)" --smtp 127.0.0.1:1025 --listen 127.0.0.1:8025 --smtp-auth-accept-any --smtp-auth-allow-insecure --quiet & mailpit=$$!; \
	  trap 'kill $$site $$mailpit 2>/dev/null' EXIT; \
	  MAILSLOT_SMTP_URL=$${MAILSLOT_SMTP_URL:-smtp://127.0.0.1:1025?starttls=off} \
	  MAILSLOT_CORS_ORIGINS=$${MAILSLOT_CORS_ORIGINS:-http://127.0.0.1:8081,http://localhost:8081} \
	  MAILSLOT_REDIRECT_HOSTS=$${MAILSLOT_REDIRECT_HOSTS:-127.0.0.1:8081,localhost:8081} \
	  MAILSLOT_THANKS_URL=$${MAILSLOT_THANKS_URL:-http://127.0.0.1:8081/thanks.html} \
	  MAILSLOT_ERROR_URL=$${MAILSLOT_ERROR_URL:-http://127.0.0.1:8081/error.html} \
	  DATABASE_URL=$${DATABASE_URL:-$(DEV_DATABASE_URL)} \
	  $(BIN)/mailslot serve
dev: run ## same as run

.PHONY: stop
stop: ## stop the local Postgres 18
	@$(PG) stop

.PHONY: db-start
db-start: ## start the local Postgres 18 (installs it on first use)
	@$(PG) start >/dev/null
	@$(PG) createdb $(DEV_DB) >/dev/null

.PHONY: migrate
migrate: db-start ## apply Postgres migrations to DATABASE_URL (default: the local database)
	@$(GO) run ./cmd/mailslotctl migrate --database-url "$${DATABASE_URL:-$(DEV_DATABASE_URL)}"

.PHONY: db-reset
db-reset: ## drop, recreate and migrate the local database
	@$(PG) dropdb $(DEV_DB)
	@$(PG) createdb $(DEV_DB)
	@$(MAKE) --no-print-directory migrate

.PHONY: db-studio
db-studio: db-start ## open a psql shell on the local database
	@$(PG) psql

.PHONY: test-deps
test-deps: ## install and start what the tests need (Postgres 18, Chromium)
	@scripts/test-deps.sh
	@$(PG) start >/dev/null
	@$(PG) dropdb $(TEST_DB) >/dev/null
	@$(PG) createdb $(TEST_DB) >/dev/null

.PHONY: test
test: test-deps ## run the whole test suite against a real Postgres 18 and SQLite
	MAILSLOT_TEST_DATABASE_URL='$(TEST_DATABASE_URL)' $(GO) test $(TEST_FLAGS) ./...

.PHONY: bench
bench: build test-deps ## load a real edge over loopback and report throughput, latency and RSS
	MAILSLOT_TEST_DATABASE_URL='$(TEST_DATABASE_URL)' $(GO) run ./cmd/mailslotbench -bin $(BIN)/mailslot $(BENCH_FLAGS)

.PHONY: fmt
fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

.PHONY: check
check: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

.PHONY: dead-exports
dead-exports: ## list functions that nothing reaches, tests included
	@out=$$($(GO) tool deadcode -test ./...); if [ -n "$$out" ]; then echo "$$out"; exit 1; fi

.PHONY: duplicates
duplicates: ## list copy-pasted code (dupl, 80-token threshold)
	@out=$$($(GO) tool dupl -t 80 $$(git ls-files '*.go' | grep -v _test.go)); echo "$$out" | tail -1; \
	  if ! echo "$$out" | grep -q 'Found total 0 clone groups'; then echo "$$out"; exit 1; fi

.PHONY: audit
audit: check dead-exports duplicates ## check + dead code + duplicated code

.PHONY: clean
clean: ## remove build output (not ./data, not .pg)
	rm -rf $(BIN)

include deploy/deploy.mk
