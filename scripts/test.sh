#!/usr/bin/env bash
# The whole test suite: unit, property and engine tests, plus the end-to-end
# tests that build network namespaces and push real curl/UDP traffic through
# lvsd. Run as root on Linux (namespaces, AF_PACKET). Installs missing
# Debian packages (iproute2, curl, nftables, chromium, prometheus-node-exporter, keepalived, …) first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
lvs_install_deps
# The end-to-end tests run the real lvsd and lvsadm binaries.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
# The end-to-end tests again, with the XDP fast path and then the TC one
# carrying every connection they can (README, "The two commands"); lvsd
# falls back to AF_PACKET by itself where they cannot be attached.
if [ $# -eq 0 ]; then
  for hook in xdp tc; do
    echo "== end-to-end tests with --fastpath $hook"
    LVSD_TEST_FASTPATH=$hook cargo test -p lvsd --locked --test 'e2e_*'
  done
fi
