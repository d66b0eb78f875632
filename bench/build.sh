#!/usr/bin/env bash
# Builds the benchmark tools: herald-hostbench (in the host's target directory, so it
# reuses the host's dependency builds) and the no-op plugin (wasm32-wasip2).
# The lock files are copied from the host's and the plugins' workspaces each time, so the
# bench crates always resolve the same dependency versions as what they measure.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
cp Cargo.lock bench/hostbench/Cargo.lock
CARGO_TARGET_DIR=$target_dir cargo build --release --manifest-path bench/hostbench/Cargo.toml
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cp plugins/Cargo.lock bench/noop-plugin/Cargo.lock
CARGO_TARGET_DIR=$PWD/bench/target cargo build --release --target wasm32-wasip2 \
    --manifest-path bench/noop-plugin/Cargo.toml
cp plugins/Cargo.lock bench/noop-v0-1/Cargo.lock
CARGO_TARGET_DIR=$PWD/bench/target cargo build --release --target wasm32-wasip2 \
    --manifest-path bench/noop-v0-1/Cargo.toml
