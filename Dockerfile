# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim Debian image
# as an unprivileged user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p dicom-gateway \
 && strip target/release/dicom-gateway

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/dicom-gateway --create-home gateway
COPY --from=build /src/target/release/dicom-gateway /usr/local/bin/dicom-gateway
COPY config/gateway.toml /etc/dicom-gateway/gateway.toml
COPY config/routes.toml /etc/dicom-gateway/routes.toml
# Demo models (not for clinical use); mount your model repository here.
COPY models /var/lib/dicom-gateway/models
USER gateway
WORKDIR /var/lib/dicom-gateway
# Data (instances, index, audit trail) must be on a persistent volume.
VOLUME ["/var/lib/dicom-gateway/data"]
ENV DICOM_GATEWAY__METRICS__LISTEN=0.0.0.0:9464 \
    DICOM_GATEWAY__DICOMWEB__CERT=/var/lib/dicom-gateway/tls/server.pem \
    DICOM_GATEWAY__DICOMWEB__KEY=/var/lib/dicom-gateway/tls/server.key \
    DICOM_GATEWAY__DICOMWEB__DEV_CERTS=false \
    DICOM_GATEWAY__PIPELINE__MODELS_DIR=/var/lib/dicom-gateway/models \
    DICOM_GATEWAY__PIPELINE__ROUTES_FILE=/etc/dicom-gateway/routes.toml
EXPOSE 11112 8443 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["dicom-gateway"]
CMD ["serve", "--config", "/etc/dicom-gateway/gateway.toml", "--data-dir", "/var/lib/dicom-gateway/data"]
