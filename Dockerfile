# Build: docker build -t anonstats .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY catalog ./catalog
COPY assets ./assets
# A member of the workspace: cargo reads its manifest to build the collector.
COPY tools ./tools
RUN cargo build --release --locked --bin anonstats

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /data --create-home anonstats
COPY --from=build /src/target/release/anonstats /usr/local/bin/anonstats
USER anonstats
WORKDIR /data
ENV ANONSTATS_BIND=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["anonstats"]
CMD ["serve"]
