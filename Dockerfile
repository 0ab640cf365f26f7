# syntax=docker/dockerfile:1
#
# ParkMe container image: the `parkme` binary alone on a distroless base.
# The live dashboard is compiled into the binary, so nothing else is copied.
#
#   docker build -t parkme:dev .
#   docker run --rm -p 8080:8080 parkme:dev            # embedded storage in /var/lib/parkme
#   docker run --rm -p 8080:8080 parkme:dev serve --demo
#
# Build arguments:
#   RUST_VERSION  toolchain image tag for the build stage (keep in step with the workspace)
#   APP_UID       numeric user the engine runs as (distroless "nonroot" is 65532)

ARG RUST_VERSION=1.95
ARG APP_UID=65532

# ---- build ------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and the target dir between builds; the
# binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p parkme-gateway --bin parkme \
 && install -D -m 0755 target/release/parkme /out/parkme
# Distroless has no shell: prepare the writable data dir here, owned by the
# runtime user, so that `docker run` without a volume still works.
ARG APP_UID
RUN install -d -m 0750 -o ${APP_UID} -g ${APP_UID} /out/data

# ---- run --------------------------------------------------------------------
# cc-debian12 = glibc + libgcc + libssl, matching the bookworm build stage.
FROM gcr.io/distroless/cc-debian12:nonroot AS run
ARG APP_UID
COPY --from=build /out/parkme /usr/local/bin/parkme
COPY --from=build --chown=${APP_UID}:${APP_UID} /out/data /var/lib/parkme
# Inside a container the engine must listen on every interface (the binary's
# own default is 127.0.0.1:8080, which is right on a laptop, not here).
ENV PARKME_LISTEN=0.0.0.0:8080 \
    PARKME_DATA_DIR=/var/lib/parkme \
    PARKME_LOG_FORMAT=json
WORKDIR /var/lib/parkme
USER ${APP_UID}:${APP_UID}
EXPOSE 8080
# No curl on distroless: the binary checks itself (GET http://127.0.0.1:8080/health/, exit 0/1).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/parkme", "healthcheck"]
# SIGTERM starts the engine's bounded drain (under 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/parkme"]
CMD ["serve"]
