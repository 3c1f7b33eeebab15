# syntax=docker/dockerfile:1
#
# The production image holds one static binary, /mailslot (the edge node).
# The operator CLI, mailslotctl, is built only by the separate `mailslotctl`
# target below; the default (last) stage never copies it, so migrations
# cannot run from a deployed container.
#
#   docker build --build-arg VERSION=$(git describe --always) -t mailslot .
#   docker build --target mailslotctl -t mailslotctl .      # operator tool
#
# BuildKit is required (cache mounts); Fly's remote builders and
# `docker compose build` use it.

ARG GO_VERSION=1.26

# --- build: shared module download and compile environment ------------------
# BUILDPLATFORM: compile natively and cross-compile to the target (pure Go,
# CGO_ENABLED=0, so cross-compiling is just GOOS/GOARCH).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0
# go.mod and go.sum first: the module download layer is reused until they change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# The data dir, created here because the final image has no shell to mkdir.
# Copied with --chown below so a fresh Docker volume mounted on /data starts
# out owned by the non-root user (Docker copies the image's ownership into a
# new named volume).
RUN mkdir -p /out/data

# --- mailslot: the edge node -------------------------------------------------
FROM build AS build-mailslot
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/mailslot ./cmd/mailslot

# --- mailslotctl: operator CLI, a separate target ----------------------------
# Used by deploy/oci/compose.yaml's one-shot `migrate` service
# (build target: mailslotctl). Never part of the default image.
FROM build AS build-mailslotctl
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/mailslotctl ./cmd/mailslotctl

FROM gcr.io/distroless/static-debian12:nonroot AS mailslotctl
COPY --from=build-mailslotctl /out/mailslotctl /mailslotctl
USER 65532:65532
ENTRYPOINT ["/mailslotctl"]

# --- production image (default target: keep this stage last) -----------------
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="mailslot" \
      org.opencontainers.image.description="mailslot edge node" \
      org.opencontainers.image.version="${VERSION}"
# GOMEMLIMIT is Go's counterpart of `node --max-old-space-size` for a 256 MB
# VM, but it is wider: it counts the whole Go runtime (heap, stacks, GC
# metadata), not only the heap. The edge keeps its whole resident set within
# 128 MiB, half the VM, leaving the rest to the guest kernel, init, Fly's
# agents, the page cache (the outbox's WAL) and Litestream: 128 MiB minus
# ~40 MiB the limit does not count (the binary's mapped code, ~30 MiB, and
# SQLite's page caches in modernc's allocator) leaves 80 MiB. The binary
# sets GOGC=400 under a limit, so the heap grows to the limit under load and
# the runtime collects there (docs/ARCHITECTURE.md, "Memory"). It is a soft
# limit: the GC works harder near it instead of the kernel OOM-killing the
# process; the bounded queues and bodies (DESIGN invariant 5) keep the live
# heap far below it. deploy/oci/compose.yaml raises it for the 1 GB VM.
ENV MAILSLOT_ENV=production \
    MAILSLOT_DATA_DIR=/data \
    GOMEMLIMIT=80MiB
COPY --from=build-mailslot /out/mailslot /mailslot
COPY --from=build --chown=65532:65532 /out/data /data
# distroless "nonroot" (uid/gid 65532); numeric so runtimes can verify
# runAsNonRoot without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
# distroless has no shell and no curl: the binary checks itself.
# `mailslot healthcheck` GETs http://127.0.0.1:<port of MAILSLOT_ADDR>/healthz
# and exits 0 on 200, 1 otherwise. Docker and compose use this; Fly ignores
# HEALTHCHECK and runs the checks in fly.toml instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/mailslot", "healthcheck"]
ENTRYPOINT ["/mailslot"]
CMD ["serve"]
