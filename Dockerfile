# groxy's image: built with the Rust toolchain, shipped as groxy alone (the binary, the C
# libraries it links, the CA roots and a passwd line), running as 10001:10001, keeping its
# accounts database (SQLite: keys made at run time, the usage ledger) in /var/lib/groxy.
#
#   docker build -t groxy .            (classic builder or BuildKit; no frontend image is fetched)
#   docker run --rm --read-only --cap-drop ALL --security-opt no-new-privileges \
#     -v groxy-data:/var/lib/groxy \
#     -p 127.0.0.1:8080:8080 -e GROQ_API_KEY -e GROXY_ALLOW_UNAUTHENTICATED=true groxy
#
# Only the build stage has a base image. scripts/docker-check makes a local stand-in under the
# same tag when no registry is reachable.

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
# Files the sources include at compile time (include_str!).
COPY migrations ./migrations
COPY config/groxy.example.toml ./config/
RUN touch src/main.rs src/lib.rs crates/groq-wire/src/lib.rs \
 && cargo build --release --locked -p groxy --bin groxy
# The runtime file system, assembled here because the runtime stage has no shell:
# - groxy and exactly the shared libraries it links (ldd: libc, libm, libgcc_s, the loader);
#   glibc 2.36 resolves names with its built-in files and dns modules, nothing is dlopened;
# - the CA roots rustls trusts for Groq and for rediss:// (the system roots);
# - a passwd and group entry for 10001, so the process has a name in `ps` and logs;
# - the data directory, owned by 10001: a volume mounted there for the first time starts as a
#   copy of it, so groxy can write its SQLite file on a read-only root file system.
RUN set -eu; root=/rootfs; \
    mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/etc/groxy" "$root/var/lib/groxy"; \
    chown 10001:10001 "$root/var/lib/groxy"; chmod 700 "$root/var/lib/groxy"; \
    cp target/release/groxy "$root/usr/local/bin/groxy"; \
    for lib in $(ldd target/release/groxy | grep -o '/[^ ]*'); do cp --parents -L "$lib" "$root/"; done; \
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"; \
    cp config/groxy.example.toml "$root/etc/groxy/"; \
    echo 'groxy:x:10001:10001:groxy:/nonexistent:/nonexistent' > "$root/etc/passwd"; \
    echo 'groxy:x:10001:' > "$root/etc/group"; \
    echo 'hosts: files dns' > "$root/etc/nsswitch.conf"; \
    "$root/usr/local/bin/groxy" --version

FROM scratch
COPY --from=build /rootfs/ /
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
ENV GROXY_LISTEN=0.0.0.0:8080 \
    GROXY_LOG_FORMAT=json \
    GROXY_DATA_DIR=/var/lib/groxy \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# groxy.db (SQLite) lives here unless GROXY_DATABASE_URL names a database. A volume, so a
# read-only container can write it: name one (-v groxy-data:/var/lib/groxy) to keep keys and
# usage across `docker rm`; otherwise Docker makes an anonymous one, kept across restarts of
# the same container. Kubernetes ignores VOLUME: mount one there (deploy/kubernetes/).
VOLUME ["/var/lib/groxy"]
EXPOSE 8080
# `groxy health` reads the listen address as `serve` does (GROXY_CONFIG, GROXY_LISTEN), so
# another port stays healthy; pass a config file as GROXY_CONFIG, not `serve --config`.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/groxy", "health"]
# Docker sends SIGTERM and waits 10 s; groxy's default drain is 8 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/groxy"]
CMD ["serve"]
