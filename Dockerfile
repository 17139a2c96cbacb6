# Build:  docker build -t respan-exporter .
# Run:    docker run -p 10077:10077 respan-exporter --demo
#
# A static musl binary on an empty image: no shell, no package manager, only
# the binary, CA certificates and an unprivileged user id.

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev gcc ca-certificates
WORKDIR /src
# Fetch dependencies in their own layer so source edits do not refetch them.
# Cargo.toml declares the benchmark target, so its file must be there too.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked && rm -rf src
COPY src ./src
RUN cargo build --release --locked --bin respan-exporter \
    && cp target/release/respan-exporter /respan-exporter

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /respan-exporter /respan-exporter
# 65532 is the conventional "nonroot" id; no /etc/passwd entry is needed.
USER 65532:65532
EXPOSE 10077
ENV RESPAN_WEB_LISTEN_ADDRESS=:10077
ENTRYPOINT ["/respan-exporter"]
