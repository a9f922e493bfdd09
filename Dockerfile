# syntax=docker/dockerfile:1
# lifeline's container image: `docker build -t lifeline .` (docs/kubernetes.md).
# The Kubernetes manifests in deploy/kubernetes run it as `lifeline --config /etc/lifeline/plan.toml ...`.

# The same Debian release as the runtime stage, so the binary links against the glibc it will meet.
ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep crates.io downloads and compiled dependencies between builds; the binary is
# copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lifeline \
    && install -D -m 755 target/release/lifeline /out/lifeline

FROM debian:bookworm-slim
# ca-certificates: HTTPS to S3 and webhooks. postgresql-client: pg_dump, pg_basebackup and friends for
# postgres sources (Debian's 15; a newer server needs its own major version's client, see
# docs/kubernetes.md). tini: PID 1 that reaps the children of command sources and passes SIGHUP
# and SIGTERM on to lifeline.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates postgresql-client tini \
    && rm -rf /var/lib/apt/lists/*
# A fixed UID, so that runAsUser and fsGroup in the manifests can name it.
RUN groupadd --system --gid 10001 lifeline \
    && useradd --system --uid 10001 --gid lifeline --home-dir /home/lifeline --create-home \
        --shell /usr/sbin/nologin lifeline
COPY --from=build /out/lifeline /usr/local/bin/lifeline
USER 10001:10001
WORKDIR /home/lifeline
# The daemon's metrics, status page and health check (the plan's [metrics] listen).
EXPOSE 9184
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["lifeline", "--help"]
