#!/usr/bin/env bash
# lvsd as a peer of the project's end-to-end benchmark (../shared/bench):
#   cd ../shared/bench && ./run-peers.sh --quick --director "lvsd=$PWD/../../main/scripts/bench-director.sh"
# The harness runs this inside the director namespace with VIP, VPORT,
# REALS, RPORT, IPERF_PORT, IPERF_REAL and RUNDIR set; lvsd stays in the
# foreground until the harness kills it. Build first: cargo build --release.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
conf="$RUNDIR/lvsd.conf"
{
  echo "director web $VIP:$VPORT TCP"
  echo "  balance roundrobin"
  echo "  mode nat"
  i=1
  for r in $REALS; do
    echo "  server rs$i $r:$RPORT"
    i=$((i + 1))
  done
  echo "director iperf $VIP:$IPERF_PORT TCP"
  echo "  balance roundrobin"
  echo "  mode nat"
  echo "  server iperf $IPERF_REAL:$IPERF_PORT"
} >"$conf"
# LVSD: another binary; LVSD_ARGS: more options (e.g. "--fastpath xdp").
# shellcheck disable=SC2086
exec "${LVSD:-$here/target/release/lvsd}" --config "$conf" --control "$RUNDIR/lvsd.sock" ${LVSD_ARGS:-}
