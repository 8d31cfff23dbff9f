#!/usr/bin/env bash
# Builds the gateway's image from the release binaries, and checks it: a container of the mock
# backends and one of the gateway sharing its network answer /health/ready with 200.
#
# No container registry is reachable from our machines, so there is no base image to pull: the
# image is made the way ci/redis-image.sh makes Redis's, from this Debian machine itself. The two
# release binaries, every library `ldd` lists for them and the dynamic loader go into a minimal
# rootfs, imported with `docker import`. Where a registry is reachable, the Dockerfile at the
# repository's root builds the same layout on debian:bookworm-slim (docs/operations.md#image).
#
# Layout: /usr/bin/gateway (the entrypoint; configuration from GATEWAY_* variables or
# --config), /usr/bin/mock-backends (run it with --entrypoint), /etc/gateway/gateway.toml (the
# example configuration, every default), ports 8000-8003 exposed.
#
#   ci/image.sh          build (cargo build --release) and import gateway:local, then check it
#   ci/image.sh check    check gateway:local only
#
# Environment: GATEWAY_IMAGE (default gateway:local). Needs a Docker engine (ci/docker-engine.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/lib/wait.sh

ref="${GATEWAY_IMAGE:-gateway:local}"
log() { echo "image: $*" >&2; }

# What to remove on exit: the build's rootfs and the check's containers.
rootfs=""
mocks="gateway-image-mocks-$$"
gateway="gateway-image-gateway-$$"
cleanup() {
  [ -n "$rootfs" ] && rm -rf "$rootfs"
  docker rm -f "$mocks" "$gateway" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if ! timeout 20 docker info >/dev/null 2>&1; then
  log "no Docker engine answers; run ci/docker-engine.sh first"
  exit 1
fi

build() {
  log "building the release binaries"
  cargo build --release --quiet -p gateway -p mock-backends --bins
  rootfs="$(mktemp -d /tmp/gateway-rootfs.XXXXXX)"
  mkdir -p "$rootfs/usr/bin" "$rootfs/etc/gateway" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  local binary lib
  for binary in gateway mock-backends; do
    cp -L "target/release/$binary" "$rootfs/usr/bin/$binary"
    # The release profile keeps debug info for profiling; the image does not need it.
    strip --strip-debug "$rootfs/usr/bin/$binary"
    # Every library ldd lists and the loader, at the paths the binary expects them.
    for lib in $(ldd "target/release/$binary" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }'); do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  done
  cp gateway/gateway.example.toml "$rootfs/etc/gateway/gateway.toml"
  echo 'gateway:x:65534:65534:gateway:/:/usr/bin/gateway' >"$rootfs/etc/passwd"
  log "importing $ref ($(du -sh "$rootfs" | cut -f1) rootfs)"
  tar -C "$rootfs" -cf - . | docker import \
    --change 'ENTRYPOINT ["/usr/bin/gateway"]' \
    --change 'USER 65534' \
    --change 'EXPOSE 8000 8001 8002 8003' \
    --message "gateway and mock-backends $(git rev-parse --short HEAD), built by ci/image.sh" \
    - "$ref" >/dev/null
}

# The mock backends in one container (listening on its loopback), the gateway in a second that
# shares its network namespace (so the gateway's default backend addresses reach them), and
# /health/ready through the port the first publishes.
check() {
  docker run -d --name "$mocks" -p 127.0.0.1::8002 --entrypoint /usr/bin/mock-backends "$ref" >/dev/null
  docker run -d --name "$gateway" --network "container:$mocks" "$ref" >/dev/null
  local port
  port="$(docker port "$mocks" 8002/tcp | head -1 | sed 's/.*://')"
  ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ]; }
  if ! wait_until 60 "/health/ready of a container from $ref to answer 200" ready; then
    log "the gateway's log:"; docker logs "$gateway" >&2 2>&1 || true
    log "the mock backends' log:"; docker logs "$mocks" >&2 2>&1 || true
    return 1
  fi
  log "$ref: /health/ready answers 200 on 127.0.0.1:$port"
  curl -s "http://127.0.0.1:$port/health/ready"
  echo
}

case "${1:-build}" in
  build) build; check ;;
  check) check ;;
  *) echo "usage: ci/image.sh [build|check]" >&2; exit 2 ;;
esac
