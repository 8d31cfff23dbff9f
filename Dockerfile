# The gateway's image, for machines that can reach a container registry. It has the layout
# ci/image.sh builds from this machine's own Debian (where no registry is reachable):
#   /usr/bin/gateway            the entrypoint; configuration from GATEWAY_* variables or --config
#   /usr/bin/mock-backends      the mock Auth, Project and Simulation services (--entrypoint)
#   /etc/gateway/gateway.toml   the example configuration: every default
# Ports: 8000 API, 8001 WebSocket, 8002 health, 8003 metrics (docs/operations.md).
#
#   docker build -t gateway .
#   docker run --rm -p 8000-8003:8000-8003 gateway
#
# The toolchain version follows rust-toolchain.toml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p gateway -p mock-backends --bins

FROM debian:bookworm-slim
COPY --from=build /src/target/release/gateway /src/target/release/mock-backends /usr/bin/
COPY gateway/gateway.example.toml /etc/gateway/gateway.toml
USER 65534
EXPOSE 8000 8001 8002 8003
ENTRYPOINT ["/usr/bin/gateway"]
