# The unitgen-runner image, for machines that reach a registry:
#   docker build -t registry.example.com/unitgen-runner:0.1.0 .
# Without a registry, build the same image FROM scratch with the local
# engine: cargo build --release --bin unitgen-runner &&
#   .ci/scratch-image unitgen-runner:0.1.0 target/release/unitgen-runner:/unitgen-runner
#
# The unit gives the command (`IMAGE /unitgen-runner --job ... --step ...`),
# so the image sets no ENTRYPOINT.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin unitgen-runner

# glibc, libgcc and CA certificates, nothing else (no shell).
FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/unitgen-runner /unitgen-runner
CMD ["/unitgen-runner", "--help"]
