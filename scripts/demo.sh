#!/usr/bin/env bash
# Builds lvsd and runs `lvsd demo`: a namespace lab with a client, the
# director and three real servers, traffic through a round-robin NAT VIP,
# the resulting `lvsadm -L -n` table, then everything removed. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
lvs_install_deps
cargo build --release --locked -p lvsd -p lvsadm
exec ./target/release/lvsd demo "$@"
