# auscult in a container: the one binary, with librdkafka built in (vendored, statically linked).
#   docker build -t auscult .
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin auscult

FROM debian:bookworm-slim
# The archive and state folders exist in the image, owned by auscult, so named volumes mounted
# there start out writable by it.
RUN useradd --system --home /var/lib/auscult auscult \
    && mkdir -p /var/lib/auscult/archive /var/lib/auscult/state \
    && chown -R auscult /var/lib/auscult
COPY --from=build /src/target/release/auscult /usr/local/bin/auscult
USER auscult
WORKDIR /var/lib/auscult
ENTRYPOINT ["auscult"]
CMD ["--help"]
