# syntax=docker/dockerfile:1
# Multi-stage: build with the Rust toolchain, run from a small Debian image as a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them. Cargo reads every workspace member's
# manifest and refuses a missing one or a declared target it cannot find: the stage copies the
# manifests and the benches groxy's manifest names, and stubs the sources. The simulator
# (crates/groq-sim, a dev-dependency) is never built here: its stub only completes the workspace.
COPY Cargo.toml Cargo.lock ./
COPY crates/groq-wire/Cargo.toml ./crates/groq-wire/
COPY crates/groq-sim/Cargo.toml ./crates/groq-sim/
COPY benches ./benches
RUN mkdir -p src crates/groq-wire/src crates/groq-sim/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > crates/groq-sim/src/main.rs \
 && touch src/lib.rs crates/groq-wire/src/lib.rs crates/groq-sim/src/lib.rs \
 && cargo build --release --locked -p groxy --bin groxy \
 && rm -rf src crates/groq-wire/src
COPY crates/groq-wire/src ./crates/groq-wire/src
COPY src ./src
RUN touch src/main.rs src/lib.rs crates/groq-wire/src/lib.rs \
 && cargo build --release --locked -p groxy --bin groxy

FROM debian:bookworm-slim AS runtime
# ca-certificates: rustls verifies Groq's certificate against the system roots.
# curl: the HEALTHCHECK below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home groxy
COPY --from=build /src/target/release/groxy /usr/local/bin/groxy
COPY config/groxy.example.toml /etc/groxy/groxy.example.toml
USER groxy
ENV GROXY_LISTEN=0.0.0.0:8080 \
    GROXY_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
# Docker sends SIGTERM and waits 10 s; groxy's default drain is 8 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/groxy"]
CMD ["serve"]
