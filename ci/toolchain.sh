#!/usr/bin/env bash
# Makes sure the toolchain rust-toolchain.toml pins is there before anything runs cargo. Our
# machines carry it as their stable toolchain, under the version's name too; when that name is
# missing but stable is that very version, the name is linked to it (what the machines do at
# boot), since no toolchain can be downloaded here. Anywhere else: `rustup toolchain install`.
set -euo pipefail
cd "$(dirname "$0")/.."
pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
command -v rustup >/dev/null || { echo "toolchain: rustup is needed (https://rustup.rs)"; exit 1; }
# Not `rustup show`: here it fails like cargo while the pinned name is missing.
host=$(rustup toolchain list | sed -n 's/^stable-\([^ ]*\).*/\1/p' | head -1)
home="${RUSTUP_HOME:-$HOME/.rustup}"
if ! rustup toolchain list | grep -q "^$pinned"; then
  stable="$home/toolchains/stable-$host"
  if [ -x "$stable/bin/rustc" ] && "$stable/bin/rustc" --version | grep -q "^rustc $pinned "; then
    ln -s "$stable" "$home/toolchains/$pinned-$host"
    echo "toolchain: $pinned is this machine's stable toolchain; linked it under its version"
  else
    echo "toolchain: $pinned (rust-toolchain.toml) is not installed; run: rustup toolchain install $pinned"
    exit 1
  fi
fi
echo "toolchain: $(cargo --version), $(cargo clippy --version), $(cargo fmt --version)"
