# syntax=docker/dockerfile:1
# One image with both binaries: `borcelle` (API, worker, inbound, migrate, admin) and `borcelle-operator`.
#
#   docker build -t borcelle .
#   docker run --rm -p 8080:8080 -p 9090:9090 --read-only -e DATABASE_URL=postgres://… borcelle
#
# Builds need no database: sqlx checks queries against the committed offline data in `.sqlx/`.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build -------------------------------------------------------------------------------------
# Debian bookworm here because the runtime image is distroless Debian 12 (bookworm): the binaries
# must link against the same glibc they run on.
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Only what the build reads, so that a change to the chart, the pipeline or the docs does not
# invalidate this layer. A new workspace member must be added here (the build fails loudly if not).
COPY Cargo.toml Cargo.lock ./
COPY .sqlx/ .sqlx/
COPY migrations/ migrations/
COPY crds/ crds/
COPY store/ store/
COPY mail/ mail/
COPY engine/ engine/
COPY operator/ operator/
COPY crm-api/ crm-api/
COPY bench/ bench/

# The target dir lives in a cache mount, which is not part of the image: the binaries are copied
# out in the same step. The `ldd` check fails the build if a binary needs a shared library that the
# runtime image (glibc, libgcc, nothing else) does not have, e.g. OpenSSL pulled in by a dependency.
RUN --mount=type=cache,id=borcelle-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=borcelle-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=borcelle-target,target=/src/target,sharing=locked \
    set -eux; \
    cargo build --release --locked \
        --package borcelle-crm-api --bin borcelle \
        --package borcelle-operator --bin borcelle-operator; \
    install -D -m 0755 target/release/borcelle /out/borcelle; \
    install -D -m 0755 target/release/borcelle-operator /out/borcelle-operator; \
    ldd /out/borcelle /out/borcelle-operator; \
    if ldd /out/borcelle /out/borcelle-operator \
        | grep -Ev '^/out/|linux-vdso|linux-gate|ld-linux|lib(c|m|dl|rt|pthread|gcc_s)\.so'; then \
        echo 'a binary needs a shared library that gcr.io/distroless/cc-debian12 does not provide' >&2; \
        exit 1; \
    fi; \
    /out/borcelle --version; \
    /out/borcelle-operator --version

# ---- runtime -----------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates, tzdata, /etc/passwd with `nonroot` (65532).
# No shell and no package manager; the binaries write nothing to disk, so the root filesystem can
# be mounted read-only. No HEALTHCHECK: there is no shell or curl here; Kubernetes probes
# /healthz and /readyz instead.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG SOURCE_URL=https://example.invalid/borcelle

LABEL org.opencontainers.image.title="borcelle" \
      org.opencontainers.image.description="Borcelle, a Kubernetes-native CRM: borcelle (API, web UI, workers, migrations) and borcelle-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=build /out/borcelle /out/borcelle-operator /usr/local/bin/

# Numeric, so that Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# 8080: the web UI and the API; 9090: /metrics (and the probes again), for Prometheus only;
# 2525: the SMTP receiver of replies and bounces (`borcelle inbound`, or `serve` with
# BORCELLE_INBOUND_DOMAIN and BORCELLE_INBOUND_LISTEN=0.0.0.0:2525), to which port 25 is forwarded.
EXPOSE 8080 9090 2525
ENTRYPOINT ["/usr/local/bin/borcelle"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--operations-listen", "0.0.0.0:9090"]
