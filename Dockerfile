# syntax=docker/dockerfile:1
# Multi-stage: build with the Rust toolchain, run from a small Debian image as a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
# The manifest names the benches, and cargo refuses a manifest whose targets are missing.
COPY benches ./benches
RUN mkdir -p src/bin \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/groq-sim.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
COPY tests/fixtures ./tests/fixtures
RUN touch src/main.rs src/lib.rs src/bin/groq-sim.rs \
 && cargo build --release --locked --bin groxy --bin groq-sim

FROM debian:bookworm-slim AS runtime
# ca-certificates: rustls verifies Groq's certificate against the system roots.
# curl: the HEALTHCHECK below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home groxy
COPY --from=build /src/target/release/groxy /usr/local/bin/groxy
COPY --from=build /src/target/release/groq-sim /usr/local/bin/groq-sim
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
