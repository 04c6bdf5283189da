#!/usr/bin/env bash
# Installs what building and testing Trawl needs on a Debian machine. Safe to re-run:
# packages already present are not fetched again.
set -euo pipefail

# build-essential + libclang-dev: the rocksdb crate compiles RocksDB's C++ and runs bindgen.
# prometheus (with promtool) and prometheus-node-exporter: the reference system that interop
# tests (remote write/read) and benchmarks run beside Trawl, and an exporter for the examples.
packages=(build-essential libclang-dev pkg-config prometheus prometheus-node-exporter)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup (the toolchain is pinned in rust-toolchain.toml)" >&2
  exit 1
fi
# rust-toolchain.toml pins the version and the rustfmt/clippy components; this installs them
# if missing.
rustup show active-toolchain >/dev/null
