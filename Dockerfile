# syntax=docker/dockerfile:1
#
# One image per service, from one build: `--target chat-api | recurring-tasks |
# notifications | reminder-cron`. `cargo xtask minikube` builds all four into Minikube:
#   minikube image build -t todo-eda/chat-api:dev --build-opt=target=chat-api .
# The builder stage is shared, so the second and later targets come from the cache.
#
# Stages: chef (toolchain + cargo-chef) -> planner (recipe.json: the workspace's manifests
# with its sources stripped) -> builder (dependencies compiled from the recipe alone, a layer
# that survives any source change that leaves Cargo.toml/Cargo.lock alone; then the
# binaries) -> runtime (debian-slim, CA certificates, non-root) -> one stage per service.

# The toolchain of rust-toolchain.toml; the runtime's Debian release matches the builder's,
# so the binaries find the glibc they were linked against.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG RUST_VERSION
# Use the image's toolchain as it is: rust-toolchain.toml would also ask for rustfmt and
# clippy, which the slim image lacks and a release build does not need.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never \
    CARGO_NET_RETRY=5
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      --bin chat-api --bin recurring-tasks --bin notifications --bin reminder-cron
COPY . .
RUN cargo build --release --locked \
      --bin chat-api --bin recurring-tasks --bin notifications --bin reminder-cron \
 && mkdir -p /out \
 && for bin in chat-api recurring-tasks notifications reminder-cron; do \
      cp "target/release/$bin" /out/; \
    done

# Only the binary and CA certificates on top of debian-slim, run as an unprivileged user.
# bash stays (it is part of the base): the Kubernetes init containers use its /dev/tcp to
# wait for Kafka, Redis and PostgreSQL.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
# Listen on every interface (the services default to loopback, which a container's port
# mapping and the kubelet's probes cannot reach); JSON logs.
ENV APP_HOST=0.0.0.0 \
    LOG_FORMAT=json
USER 10001:10001

# Probes: every service serves GET /healthz (alive) and GET /readyz (ready) on its port.
FROM runtime AS chat-api
COPY --from=builder /out/chat-api /usr/local/bin/chat-api
ENV APP_PORT=3000
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/chat-api"]
CMD ["serve"]

FROM runtime AS recurring-tasks
COPY --from=builder /out/recurring-tasks /usr/local/bin/recurring-tasks
ENV APP_PORT=3001
EXPOSE 3001
ENTRYPOINT ["/usr/local/bin/recurring-tasks"]

FROM runtime AS notifications
COPY --from=builder /out/notifications /usr/local/bin/notifications
ENV APP_PORT=3002
EXPOSE 3002
ENTRYPOINT ["/usr/local/bin/notifications"]

FROM runtime AS reminder-cron
COPY --from=builder /out/reminder-cron /usr/local/bin/reminder-cron
ENV APP_PORT=3003
EXPOSE 3003
ENTRYPOINT ["/usr/local/bin/reminder-cron"]
