# syntax=docker/dockerfile:1
#
# The multiarch-operator image: the controller, and the merge image its merge
# Jobs run (`multiarch-operator merge`). A static musl binary on distroless
# static (CA certificates for registry TLS, user 65532, nothing else).
#
# Build it natively on each architecture (the operator does, see
# deploy/examples/self-build.yaml) and publish linux/amd64 and linux/arm64:
# merge Jobs may land on either. No cross-compilation: the builder stage runs
# on the build node's own architecture.
#
#   docker build -t multiarch-operator:dev .

ARG RUST_VERSION=1.89

FROM docker.io/library/rust:${RUST_VERSION}-alpine AS build
# ring (rustls) compiles C and assembly: musl headers and a C compiler.
RUN apk add --no-cache musl-dev gcc
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target dir between builds (BuildKit
# and buildah both support them); the binary is copied out of the cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin multiarch-operator \
 && mkdir -p /out \
 && cp target/release/multiarch-operator /out/multiarch-operator \
 && /out/multiarch-operator --version

FROM gcr.io/distroless/static-debian12:nonroot
# Merge Jobs call `multiarch-operator` by name: it must be on PATH.
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY --from=build /out/multiarch-operator /usr/local/bin/multiarch-operator
USER 65532:65532
ENTRYPOINT ["multiarch-operator"]
CMD ["controller"]
