# deploy/deploy.mk - deployment and database-operations targets, included by
# the top-level Makefile (`include deploy/deploy.mk`), which provides `check`
# and `test`. Guides: deploy/README.md (Fly.io), deploy/oci/README.md (OCI).
#
# Nothing here prints a secret: recipes that handle DATABASE_URL or
# .env.production are silent (@), and their files are read, never echoed.

FLY_APP            ?= mailslot
FLY_CONFIG         ?= fly.toml
# The Fly Postgres app created by `fly postgres create --name ...`.
FLY_PG_APP         ?= $(FLY_APP)-db
FLY_ORG            ?= personal
FLY_PRIMARY_REGION ?= yyz
# Regions for `make fly-regions`: one machine and one volume in each.
FLY_REGIONS        ?= yyz iad cdg
FLY_URL            ?= https://$(FLY_APP).fly.dev
FLY_DEPLOY_FLAGS   ?=
ENV_PRODUCTION     ?= .env.production
# Health verification after a deploy: attempts x delay seconds.
HEALTH_RETRIES     ?= 30
HEALTH_DELAY       ?= 5
VERSION            ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

BACKUP_DIR         ?= ./backups
BACKUP_KEEP_DAYS   ?= 14
PG_SH              ?= scripts/pg.sh
# The operator CLI; `ci` runs its migrate command.
MAILSLOTCTL        ?= go run ./cmd/mailslotctl

# flyctl is installed as `flyctl` and usually also as `fly`; take whichever
# exists (override with FLY=/path/to/flyctl).
ifeq ($(origin FLY),undefined)
FLY := $(or $(firstword $(shell command -v flyctl 2>/dev/null || command -v fly 2>/dev/null)),flyctl)
endif

deploy_comma := ,
deploy_empty :=
deploy_space := $(deploy_empty) $(deploy_empty)

.PHONY: fly-require fly-launch fly-deploy fly-deploy-only fly-verify fly-secrets \
	fly-logs fly-ssh fly-status fly-regions fly-pg-attach ci pg-backup pg-restore-check

# fly-require: every flyctl target depends on it. Not listed by `make help`.
fly-require:
	@command -v $(FLY) >/dev/null 2>&1 || { \
		echo "deploy: '$(FLY)' (flyctl) not found. Install it (https://fly.io/docs/flyctl/install/) or set FLY=/path/to/flyctl." >&2; \
		exit 127; }
	@$(FLY) auth whoami >/dev/null 2>&1 || { \
		echo "deploy: '$(FLY) auth whoami' failed: not logged in to Fly.io. Run '$(FLY) auth login', or set FLY_API_TOKEN (CI)." >&2; \
		exit 1; }

fly-launch: fly-require ## first-time scaffold: create the app and its first volume (fly.toml is kept as is)
	$(FLY) apps create $(FLY_APP) --org $(FLY_ORG)
	$(FLY) volumes create mailslot_data --app $(FLY_APP) --region $(FLY_PRIMARY_REGION) --size 1 --yes
	@echo "next: fly postgres create --name $(FLY_PG_APP) --region $(FLY_PRIMARY_REGION); make fly-pg-attach; make fly-secrets; make ci DATABASE_URL=...; make fly-deploy"

fly-deploy: check test fly-require ## quality gates → fly deploy → verify health (/readyz)
	$(FLY) deploy --app $(FLY_APP) --config $(FLY_CONFIG) --build-arg VERSION=$(VERSION) $(FLY_DEPLOY_FLAGS)
	@$(MAKE) --no-print-directory fly-verify

fly-deploy-only: fly-require ## deploy without the quality gates, then verify health
	$(FLY) deploy --app $(FLY_APP) --config $(FLY_CONFIG) --build-arg VERSION=$(VERSION) $(FLY_DEPLOY_FLAGS)
	@$(MAKE) --no-print-directory fly-verify

fly-verify: ## curl https://FLY_APP.fly.dev/readyz until it answers 200 (HEALTH_RETRIES x HEALTH_DELAY s)
	@command -v curl >/dev/null 2>&1 || { echo "deploy: curl not found" >&2; exit 127; }
	@i=1; while :; do \
		code=$$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 '$(FLY_URL)/readyz' 2>/dev/null) || code=000; \
		if [ "$$code" = 200 ]; then echo "deploy: $(FLY_URL)/readyz answered 200 (attempt $$i)"; break; fi; \
		if [ $$i -ge $(HEALTH_RETRIES) ]; then \
			echo "deploy: $(FLY_URL)/readyz still answers $$code after $(HEALTH_RETRIES) attempts; see 'make fly-logs' and '$(FLY) checks list -a $(FLY_APP)'" >&2; \
			exit 1; fi; \
		echo "deploy: /readyz answered $$code, retrying in $(HEALTH_DELAY)s ($$i/$(HEALTH_RETRIES))"; \
		i=$$((i+1)); sleep $(HEALTH_DELAY); \
	done
	@curl -fsS -o /dev/null --max-time 5 '$(FLY_URL)/healthz' && echo "deploy: $(FLY_URL)/healthz answered 200"

# Staged: the secrets reach the machines with the next deploy (one restart,
# not one per secret). The file is validated first so that flyctl never gets
# (and never echoes back) a malformed line; only line numbers are reported.
fly-secrets: fly-require ## import .env.production (ENV_PRODUCTION) into Fly secrets, staged for the next deploy
	@test -f '$(ENV_PRODUCTION)' || { \
		echo "deploy: $(ENV_PRODUCTION) not found. Create it (NAME=VALUE lines: MAILSLOT_IP_PEPPER, MAILSLOT_TOKEN_KEY, MAILSLOT_ADMIN_TOKEN, MAILSLOT_REPLICA_URL) and keep it out of git." >&2; \
		exit 1; }
	@if git ls-files --error-unmatch '$(ENV_PRODUCTION)' >/dev/null 2>&1; then \
		echo "deploy: $(ENV_PRODUCTION) is tracked by git; remove it from the repository (git rm --cached) and rotate its secrets" >&2; \
		exit 1; fi
	@awk 'BEGIN { bad = 0; multi = 0 } \
		multi { if ($$0 ~ /"""$$/) multi = 0; next } \
		/^#/ || /^[[:space:]]*$$/ { next } \
		/^[A-Za-z_][A-Za-z0-9_]*=/ { \
			if ($$0 ~ /^DATABASE_URL=/) { print "deploy: $(ENV_PRODUCTION) line " NR ": DATABASE_URL is set by make fly-pg-attach, not here" > "/dev/stderr"; bad = 1 } \
			v = $$0; sub(/^[^=]*=[[:space:]]*/, "", v); if (v ~ /^"""/) multi = 1; next } \
		{ print "deploy: $(ENV_PRODUCTION) line " NR ": not NAME=VALUE (comments start in column 1; no export; no space before =)" > "/dev/stderr"; bad = 1 } \
		END { if (multi) { print "deploy: $(ENV_PRODUCTION): a \"\"\" value is not closed by a line ending in \"\"\"" > "/dev/stderr"; bad = 1 } exit bad }' '$(ENV_PRODUCTION)'
	@$(FLY) secrets import --stage --app $(FLY_APP) < '$(ENV_PRODUCTION)' >/dev/null
	@echo "deploy: secrets from $(ENV_PRODUCTION) staged for $(FLY_APP); they take effect with the next 'make fly-deploy'"
	@$(FLY) secrets list --app $(FLY_APP)

fly-logs: fly-require ## tail production logs (REGION=yyz to filter)
	$(FLY) logs --app $(FLY_APP) $(if $(REGION),--region $(REGION))

# The image is distroless: no shell to log in to. With SSH_CMD, run one
# command in a machine; without it, open an SFTP shell to look at /data.
fly-ssh: fly-require ## run SSH_CMD in a machine (SSH_CMD='/mailslot healthcheck'); without it an sftp shell (no shell in the image)
ifeq ($(strip $(SSH_CMD)),)
	@echo "deploy: the image has no shell; opening 'fly ssh sftp shell' (or run: make fly-ssh SSH_CMD='/mailslot healthcheck')"
	$(FLY) ssh sftp shell --app $(FLY_APP)
else
	$(FLY) ssh console --app $(FLY_APP) --command '$(SSH_CMD)'
endif

fly-status: fly-require ## machines per region, their volumes and health checks
	$(FLY) status --app $(FLY_APP)
	$(FLY) volumes list --app $(FLY_APP)
	$(FLY) checks list --app $(FLY_APP)

fly-regions: fly-require ## one machine + one mailslot_data volume in each of FLY_REGIONS (fly scale count)
	$(FLY) scale count $(words $(FLY_REGIONS)) --app $(FLY_APP) \
		--region $(subst $(deploy_space),$(deploy_comma),$(strip $(FLY_REGIONS))) --max-per-region 1 --yes

fly-pg-attach: fly-require ## fly postgres attach FLY_PG_APP (default mailslot-db): sets the DATABASE_URL secret
	$(FLY) postgres attach $(FLY_PG_APP) --app $(FLY_APP)

# ci: the gates, then the production migration. DATABASE_URL here is the
# production database (through `fly proxy`), so the gates must never see it:
# they run in a sub-make without DATABASE_URL in the environment and without
# the command line's variables (MAKEFLAGS=), so `test` uses its own local
# database (scripts/pg.sh) exactly as in `make test`.
ci: ## quality gates (check + test), then mailslotctl migrate against DATABASE_URL (production, via fly proxy)
	@test -n '$(if $(filter environment% command%,$(origin DATABASE_URL)),$(DATABASE_URL))' || { \
		echo "deploy: DATABASE_URL is not set (in the environment or on the command line); ci migrates the production database after the gates. Open a tunnel (fly proxy 15432:5432 -a $(FLY_PG_APP)) and run: make ci DATABASE_URL=postgres://USER:PASS@127.0.0.1:15432/$(FLY_APP)" >&2; \
		exit 2; }
	@env -u DATABASE_URL MAKEFLAGS= $(MAKE) --no-print-directory check test
	@echo "deploy: gates passed; migrating"
	@DATABASE_URL='$(DATABASE_URL)' $(MAILSLOTCTL) migrate

pg-backup: ## pg_dump -Fc DATABASE_URL into BACKUP_DIR (./backups), prune dumps older than BACKUP_KEEP_DAYS (14)
	@DATABASE_URL='$(DATABASE_URL)' BACKUP_DIR='$(BACKUP_DIR)' BACKUP_KEEP_DAYS='$(BACKUP_KEEP_DAYS)' \
		PG_SH='$(PG_SH)' bash scripts/pg-backup.sh

pg-restore-check: ## restore the newest dump into a fresh PostgreSQL 18 database and compare row counts
	@DATABASE_URL='$(DATABASE_URL)' BACKUP_DIR='$(BACKUP_DIR)' PG_SH='$(PG_SH)' \
		bash scripts/pg-restore-check.sh
