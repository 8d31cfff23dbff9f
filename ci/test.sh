#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it: makes sure the pinned toolchain is
# there, a Docker engine runs and the local Redis image exists (the Redis integration tests start
# Redis through testcontainers), then runs every test of the workspace. The preparation steps are
# idempotent and fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/toolchain.sh
bash ci/docker-engine.sh
bash ci/redis-image.sh
cargo test --workspace "$@"
