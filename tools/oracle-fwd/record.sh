#!/bin/bash
# record.sh [-s "NAME..."] [OUT_DIR]  -- record the forwarding (packet transformation) vectors.
#
# Boots the IPVS oracle VM (/work/shared/oracle, ORACLE_KERNEL, default 6.18) with the test network
# and tap captures, runs guest.sh in it and host.py next to it (scenarios.py), then turns the run
# into one JSON file per scenario (post.py) in OUT_DIR (default:
# /var/tmp/ipvs-oracle-results/kernel-$ORACLE_KERNEL/fwd). -s records only the named scenarios.
# Needs root. See README.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ORACLE=${ORACLE:-/work/shared/oracle}
export ORACLE_KERNEL=${ORACLE_KERNEL:-6.18}
ONLY=""
while getopts "s:" o; do case $o in s) ONLY=$OPTARG ;; *) sed -n '2,8p' "$0" >&2; exit 2 ;; esac; done
shift $((OPTIND-1))
DEST=${1:-/var/tmp/ipvs-oracle-results/kernel-$ORACLE_KERNEL/fwd}
. "$ORACLE/lib/kernel-env.sh"
WORK=${IPVS_ORACLE_WORK:-/var/tmp/ipvs-oracle}
"$ORACLE/build.sh" >/dev/null
mkdir -p "$WORK/runs"
RUN=$(mktemp -d "$WORK/runs/fwd.XXXXXX")
mkdir -p "$RUN/tools" "$RUN/fwd"
cp "$HERE"/{scenarios.py,pkt.py,host.py} "$RUN/tools/"
T0=$(date +%s)
rc=0
"$ORACLE/run.sh" -q -p -t 900 -o "$RUN" -e "OF_ONLY=$ONLY" -e "OF_SETTLE=${OF_SETTLE:-0.6}" -H "$HERE/host.sh" "$HERE/guest.sh" || rc=$?
T1=$(date +%s)
echo "record.sh: run dir $RUN, guest rc=$rc, host rc=$(cat "$RUN/host.rc" 2>/dev/null), $((T1 - T0)) s" >&2
if [ $rc != 0 ] || [ "$(cat "$RUN/host.rc" 2>/dev/null)" != 0 ]; then
  tail -20 "$RUN/host.log" "$RUN/guest.log" >&2; exit 1
fi
rm -rf "$DEST"; mkdir -p "$DEST"
python3 -B "$HERE/post.py" "$RUN" "$DEST" --kernel-package "$(cat "$WORK/kernel-package" 2>/dev/null)" \
  --command "tools/oracle-fwd/record.sh${ONLY:+ -s \"$ONLY\"}"
echo "record.sh: $((T1 - T0)) s of VM time; vectors in $DEST" >&2
