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
  # lvsd's XDP program is built from C for the BPF target at build time.
  command -v clang >/dev/null 2>&1 || need+=(clang)
  [ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
  # The observability tests: the status page in a real browser, and
  # node_exporter reading lvsd's /proc views.
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
  # The VRRP tests' peer.
  [ -x /usr/sbin/keepalived ] || need+=(keepalived)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "missing packages: ${need[*]} (run as root, or install them with apt-get)" >&2
      return 1
    fi
    echo "installing ${need[*]} ..." >&2
    apt-get update -qq
    # Packages with a service (prometheus-node-exporter, keepalived) must not start it:
    # the tests run their own copy, inside a lab namespace.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || rc=$?
    [ "$own_policy" -eq 0 ] || rm -f "$policy"
    [ "$rc" -eq 0 ] || return 1
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust first (https://rustup.rs), then run this again" >&2
    return 1
  fi
}
