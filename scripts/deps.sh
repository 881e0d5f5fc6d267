#!/usr/bin/env bash
# Installs the Debian packages lvsd's demo and tests use, if they are missing.
# Sourced by scripts/demo.sh and scripts/test.sh.
lvs_install_deps() {
  local need=()
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
  command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
  command -v nft >/dev/null 2>&1 || need+=(nftables)
  command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "missing packages: ${need[*]} (run as root, or install them with apt-get)" >&2
      return 1
    fi
    echo "installing ${need[*]} ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust first (https://rustup.rs), then run this again" >&2
    return 1
  fi
}
