#!/usr/bin/env bash
# Ensures a local Redis image exists for the Redis integration tests (crate `redis-harness`).
#
# Image name and tag come from REDIS_IMAGE / REDIS_TAG (defaults `redis` / `7-local`; the tag names
# the Redis major version and says the image was built locally, so it never shadows an official
# `redis:7` that a machine with registry access may have). The harness reads the same variables
# with the same defaults.
#
# 1. If `docker image inspect` finds the image, nothing to do.
# 2. Else try `docker pull` (bounded by REDIS_PULL_TIMEOUT_SECONDS; no registry is reachable from our
#    machines, so this normally fails in well under a second).
# 3. Else build it: Debian's redis-server plus every library `ldd` lists and the dynamic loader, in a
#    minimal rootfs, imported with `docker import`. /usr/bin/redis-server is a symlink to
#    redis-check-rdb and the binary picks its role from the name it was started under, so it is
#    copied dereferenced under the name `redis-server`.
# 4. Verify: run a container and PING it.
#
# The image's CMD makes Redis listen on all interfaces, with protected mode off and no persistence,
# so a container restart starts empty (like a crash) and clients outside the container can connect.
#
# Environment:
#   REDIS_IMAGE                 image name (default: redis)
#   REDIS_TAG                   image tag (default: 7-local)
#   REDIS_PULL_TIMEOUT_SECONDS  bound on `docker pull` (default: 20)
#   REDIS_IMAGE_REBUILD=1       build even if the image exists
set -euo pipefail

REDIS_IMAGE="${REDIS_IMAGE:-redis}"
REDIS_TAG="${REDIS_TAG:-7-local}"
REDIS_PULL_TIMEOUT_SECONDS="${REDIS_PULL_TIMEOUT_SECONDS:-20}"
ref="${REDIS_IMAGE}:${REDIS_TAG}"

log() { echo "redis-image: $*" >&2; }

if ! timeout 20 docker info >/dev/null 2>&1; then
    log "no Docker engine answers; run ci/docker-engine.sh first"
    exit 1
fi

# Runs a container from the image, PINGs it, and removes it. Uses redis-cli when present, else
# bash's /dev/tcp, so verification needs nothing beyond what the build already needed.
verify() {
    local name="redis-image-verify-$$"
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker run -d --name "$name" -p 127.0.0.1::6379 "$ref" >/dev/null
    local port
    port="$(docker port "$name" 6379/tcp | head -1 | sed 's/.*://')"
    local reply="" i
    for i in $(seq 1 50); do
        if command -v redis-cli >/dev/null 2>&1; then
            reply="$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null || true)"
        else
            reply="$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; printf '*1\r\n\$4\r\nPING\r\n' >&3; head -c 7 <&3" 2>/dev/null || true)"
        fi
        case "$reply" in *PONG*) break ;; esac
        sleep 0.2
    done
    if [[ "$reply" != *PONG* ]]; then
        log "container from $ref did not answer PING on 127.0.0.1:$port; its log:"
        docker logs "$name" >&2 2>&1 || true
        docker rm -f "$name" >/dev/null 2>&1 || true
        return 1
    fi
    docker rm -f "$name" >/dev/null 2>&1 || true
    log "$ref answers PING"
}

if [ "${REDIS_IMAGE_REBUILD:-0}" != 1 ] && docker image inspect "$ref" >/dev/null 2>&1; then
    log "$ref is present"
    exit 0
fi

if [ "${REDIS_IMAGE_REBUILD:-0}" != 1 ]; then
    log "trying docker pull $ref (bounded to ${REDIS_PULL_TIMEOUT_SECONDS} s)"
    if timeout "$REDIS_PULL_TIMEOUT_SECONDS" docker pull "$ref" >/dev/null 2>&1; then
        log "pulled $ref"
        verify
        exit 0
    fi
    log "pull failed (no registry reachable?); building $ref from Debian's redis-server"
fi

if ! command -v redis-server >/dev/null 2>&1 || [ ! -e /usr/bin/redis-server ]; then
    log "installing Debian's redis-server package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y redis-server >/tmp/redis-image-apt.log 2>&1 || {
        apt-get update >>/tmp/redis-image-apt.log 2>&1 || true
        apt-get install -y redis-server >>/tmp/redis-image-apt.log 2>&1 || {
            log "apt-get install -y redis-server failed; see /tmp/redis-image-apt.log"
            exit 1
        }
    }
fi

rootfs="$(mktemp -d /tmp/redis-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

# The binary, dereferenced, under the name that selects the server role.
mkdir -p "$rootfs/usr/bin"
cp -L /usr/bin/redis-server "$rootfs/usr/bin/redis-server"

# Every library ldd lists (the "=> /path" ones and the loader, which ldd prints as a bare path),
# dereferenced, at the same paths, so the loader finds them exactly where the binary expects them.
libs="$(ldd /usr/bin/redis-server | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }')"
if [ -z "$libs" ]; then
    log "ldd listed no libraries for /usr/bin/redis-server"
    exit 1
fi
for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
# Debian's loader path is /lib64/ld-linux-x86-64.so.2 and /lib is a symlink to /usr/lib there;
# copying each at the path ldd printed keeps both spellings working.

# Redis needs a writable working directory and /tmp; /data is the conventional one.
mkdir -p "$rootfs/data" "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
echo 'root:x:0:0:root:/root:/usr/bin/redis-server' >"$rootfs/etc/passwd"

log "importing $ref ($(du -sh "$rootfs" | cut -f1) rootfs)"
tar -C "$rootfs" -cf - . | docker import \
    --change 'ENTRYPOINT ["/usr/bin/redis-server"]' \
    --change 'CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]' \
    --change 'EXPOSE 6379' \
    --change 'WORKDIR /data' \
    --message "Debian $(redis-server --version | awk '{print $3}') redis-server, built by ci/redis-image.sh" \
    - "$ref" >/dev/null

verify
