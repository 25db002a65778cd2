#!/usr/bin/env bash
# The test command (README and .ci/run call exactly this). Installs what the tests need on a
# fresh Debian machine, then runs formatting, lints and every test. Needs root: the integration
# tests create namespaces, cgroups and mounts, and fail loudly (never skip) without it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: the integration tests need root (namespaces, cgroups): run it with sudo" >&2
    exit 1
fi
need=()
for tool in ip:iproute2 ps:procps unshare:util-linux; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo build --release
cargo test --release -- --test-threads=4
