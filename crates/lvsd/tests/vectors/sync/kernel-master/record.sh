#!/bin/bash
# record.sh [DEST]  -- Recording A: a real Linux IPVS master sync daemon (oracle VM, ORACLE_KERNEL,
# default 6.18) and the messages it sends for known traffic (see README.md).
#
# Boots the oracle VM with the test network and pcaps (run.sh -p), runs guest.sh in it and
# host.py next to it, then post.py turns the run into the vector files. The run directory is
# $ORACLE_RESULTS/kernel-$ORACLE_KERNEL/sync-kernel-master/run (default ORACLE_RESULTS:
# /var/tmp/ipvs-oracle-results), the vector files go to $ORACLE_RESULTS/.../sync-kernel-master/vectors,
# and also to DEST if given (e.g. `./record.sh .` to refresh this directory; scripts are not touched).
# Needs root and python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ORACLE=${ORACLE:-/work/shared/oracle}
export ORACLE_KERNEL=${ORACLE_KERNEL:-6.18}
. "$ORACLE/lib/kernel-env.sh"
RESULTS=${ORACLE_RESULTS:-/var/tmp/ipvs-oracle-results}/kernel-$ORACLE_KERNEL/sync-kernel-master
"$ORACLE/build.sh" > /dev/null
RUN=$RESULTS/run
rm -rf "$RUN" "$RESULTS/vectors"; mkdir -p "$RUN/tools"
cp "$HERE/host.py" "$RUN/tools/"
T0=$(date +%s.%N)
rc=0
"$ORACLE/run.sh" -q -p -t 300 -o "$RUN" -e "SYNC_WAIT=${SYNC_WAIT:-5}" -e "PAUSE=${PAUSE:-4}" -H "$HERE/host.sh" "$HERE/guest.sh" || rc=$?
T1=$(date +%s.%N)
echo "record.sh: run dir $RUN, guest rc=$rc, host rc=$(cat "$RUN/host.rc" 2>/dev/null)," \
     "$(awk "BEGIN{printf \"%.1f\", $T1 - $T0}") s" >&2
if [ $rc != 0 ] || [ "$(cat "$RUN/host.rc" 2>/dev/null)" != 0 ]; then
  tail -20 "$RUN/host.log" "$RUN/guest.log" >&2; exit 1
fi
python3 "$HERE/post.py" "$RUN" "$RESULTS/vectors" "$ORACLE"
{ echo "kernel_package=$(cat "${IPVS_ORACLE_WORK:-/var/tmp/ipvs-oracle}/kernel-package" 2>/dev/null)"; cat "$RUN/run.timing"; } \
  > "$RESULTS/vectors/run.txt"
if [ $# -ge 1 ]; then
  mkdir -p "$1"; rm -rf "$1/messages"
  cp -r "$RESULTS/vectors/." "$1/"
  echo "record.sh: vectors copied to $1" >&2
fi
