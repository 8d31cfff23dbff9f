#!/usr/bin/env bash
# Ensures a Docker engine is running on this machine, for the Redis integration tests
# (testcontainers). Idempotent: when `docker info` already succeeds it does nothing.
#
# Otherwise it installs Debian's `docker.io` package if `dockerd` is missing, starts `dockerd` in the
# background (these machines run no systemd, so there is no service to start) and waits, bounded,
# until `docker info` answers. Exits non-zero with a message saying what failed and where the log is.
#
# Configuration that works here (Debian 12 in a VM, root, cgroup v1 hierarchy mounted, kernel with
# overlayfs and nf_tables): plain `dockerd` with its defaults — overlay2 storage, cgroupfs cgroup
# driver, iptables on — starts in about 2 s and runs containers with published ports. So no flags
# are forced. Where a host lacks those kernel features, set DOCKERD_FLAGS, e.g.
#   DOCKERD_FLAGS="--iptables=false --storage-driver=vfs"
# vfs needs no overlayfs (it copies every layer, which costs little for the 17 MB Redis image);
# with --iptables=false published ports are still served by the userland docker-proxy, which is
# all the tests need since they dial 127.0.0.1:<published port>. Both configurations were run here:
# the default one and this one (with --data-root on /tmp) each passed the redis-harness tests.
#
# Environment:
#   DOCKERD_FLAGS        extra flags for dockerd (default: none)
#   DOCKERD_LOG          where dockerd writes its log (default: /tmp/dockerd.log)
#   DOCKERD_WAIT_SECONDS how long to wait for `docker info` after starting dockerd (default: 60)
set -euo pipefail

DOCKERD_FLAGS="${DOCKERD_FLAGS:-}"
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
DOCKERD_WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"

log() { echo "docker-engine: $*" >&2; }

if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    log "a Docker engine is already running ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ] && [[ "${DOCKER_HOST}" != unix://* ]]; then
    log "DOCKER_HOST=${DOCKER_HOST} points at a remote engine that does not answer; unset it to use a local one"
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        log "dockerd is not installed and installing it needs root: run 'apt-get install -y docker.io' as root"
        exit 1
    fi
    log "installing Debian's docker.io package"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y docker.io >/tmp/docker-engine-apt.log 2>&1; then
        log "apt-get install failed once; refreshing the package lists and retrying"
        apt-get update >>/tmp/docker-engine-apt.log 2>&1 || true
        apt-get install -y docker.io >>/tmp/docker-engine-apt.log 2>&1 || {
            log "apt-get install -y docker.io failed; see /tmp/docker-engine-apt.log"
            exit 1
        }
    fi
fi

if pgrep -x dockerd >/dev/null 2>&1; then
    # A dockerd that is running but not answering yet (e.g. started a moment ago): wait for it
    # rather than starting a second one, which would fail on the pid file.
    log "dockerd is already running (pid $(pgrep -x dockerd | head -1)); waiting for it to answer"
else
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    log "starting dockerd ${DOCKERD_FLAGS} (log: $DOCKERD_LOG)"
    # setsid + nohup: the daemon outlives this script and the CI step's process group.
    # shellcheck disable=SC2086 # DOCKERD_FLAGS is a list of flags.
    setsid nohup dockerd ${DOCKERD_FLAGS} >>"$DOCKERD_LOG" 2>&1 </dev/null &
fi

deadline=$((SECONDS + DOCKERD_WAIT_SECONDS))
while [ "$SECONDS" -lt "$deadline" ]; do
    if timeout 10 docker info >/dev/null 2>&1; then
        log "Docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), storage driver $(docker info --format '{{.Driver}}' 2>/dev/null || echo '?'))"
        exit 0
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        log "dockerd exited during start-up; last lines of $DOCKERD_LOG:"
        tail -n 20 "$DOCKERD_LOG" >&2 || true
        log "if it failed on storage or iptables, retry with DOCKERD_FLAGS=\"--iptables=false --storage-driver=vfs\""
        exit 1
    fi
    sleep 1
done

log "dockerd did not answer 'docker info' within ${DOCKERD_WAIT_SECONDS} s; last lines of $DOCKERD_LOG:"
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1
