#!/bin/bash
# backup.sh [-s SYNCID] [-w SECONDS] [-g GAP_MS] DIR  -- feed sync messages to a real Linux IPVS
# backup daemon (oracle VM, ORACLE_KERNEL, default 6.18) and record what it made of them.
#
# DIR must hold config.txt (ipvsadm -R input: the backup's services) and messages/NNN.bin (raw
# sync UDP payloads, sent in file-name order). Optional: DIR/guest-setup.sh, sourced in the VM
# (busybox sh) before ipvsadm -R (e.g. sysctls, ipvsadm --set).
# Boots the VM, restores config.txt, starts `ipvsadm --start-daemon backup --mcast-interface eth0
# --syncid SYNCID` (default 0 = accept every syncid), sends the messages from the host side to
# 224.0.0.81:8848 (TTL 1, GAP_MS apart, default 50), waits SECONDS (default 1) and writes
# DIR/kernel/ (replaced): conns.txt, conn_sync.txt, services.txt, stats.txt and more (README.md).
# The run directory is kept under $ORACLE_RESULTS/kernel-$ORACLE_KERNEL/oracle-sync/.
# Needs root and python3; ~15 s.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ORACLE=${ORACLE:-/work/shared/oracle}
export ORACLE_KERNEL=${ORACLE_KERNEL:-6.18}
SYNCID=0 WAIT=1 GAP=50
usage() { sed -n '2,13p' "$0" >&2; exit 2; }
while getopts "s:w:g:h" o; do
  case $o in s) SYNCID=$OPTARG ;; w) WAIT=$OPTARG ;; g) GAP=$OPTARG ;; *) usage ;; esac
done
shift $((OPTIND-1))
[ $# -eq 1 ] || usage
DIR=$(cd "$1" && pwd)
[ -f "$DIR/config.txt" ] || { echo "backup.sh: $DIR/config.txt missing" >&2; exit 2; }
shopt -s nullglob
MSGS=("$DIR"/messages/*.bin)
[ ${#MSGS[@]} -ge 1 ] || { echo "backup.sh: no $DIR/messages/*.bin" >&2; exit 2; }
. "$ORACLE/lib/kernel-env.sh"
WORK=${IPVS_ORACLE_WORK:-/var/tmp/ipvs-oracle}
"$ORACLE/build.sh" > /dev/null
RESULTS=${ORACLE_RESULTS:-/var/tmp/ipvs-oracle-results}/kernel-$ORACLE_KERNEL/oracle-sync
mkdir -p "$RESULTS"
RUN=$(mktemp -d "$RESULTS/backup.XXXXXX")
mkdir -p "$RUN/in" "$RUN/kernel"
cp "$DIR/config.txt" "$RUN/in/"
[ -f "$DIR/guest-setup.sh" ] && cp "$DIR/guest-setup.sh" "$RUN/in/"
for m in "${MSGS[@]}"; do
  [ -s "$m" ] || { echo "backup.sh: $m is empty" >&2; exit 2; }
  echo "# file messages/$(basename "$m")"
  python3 -c 'import sys; print(open(sys.argv[1], "rb").read().hex())' "$m"
done > "$RUN/in/messages.hex"
T0=$(date +%s.%N)
rc=0
"$ORACLE/run.sh" -q -p -t 180 -o "$RUN" -e "SYNCID=$SYNCID" -e "AFTER_WAIT=$WAIT" -e "GAP_MS=$GAP" \
  -H "$HERE/backup-host.sh" "$HERE/backup-guest.sh" || rc=$?
T1=$(date +%s.%N)
if [ $rc != 0 ] || [ "$(cat "$RUN/host.rc" 2>/dev/null)" != 0 ]; then
  echo "backup.sh: run failed (guest rc=$rc, host rc=$(cat "$RUN/host.rc" 2>/dev/null)); run dir $RUN" >&2
  tail -20 "$RUN/host.log" "$RUN/guest.log" "$RUN/kernel/restore.log" 2>/dev/null >&2; exit 1
fi
python3 "$HERE/backup-post.py" "$RUN" "$ORACLE"
{ echo "kernel_package=$(cat "$WORK/kernel-package" 2>/dev/null)"
  echo "command=tools/oracle-sync/backup.sh -s $SYNCID -w $WAIT -g $GAP DIR"
  echo "messages=${#MSGS[@]}"
  echo "run_dir=$RUN"
  cat "$RUN/run.timing"
  awk "BEGIN{printf \"backup_sh_wall_s=%.1f\n\", $T1 - $T0}"; } > "$RUN/kernel/run.txt"
rm -rf "$DIR/kernel"; mkdir -p "$DIR/kernel"
cp -r "$RUN/kernel/." "$DIR/kernel/"
echo "backup.sh: ${#MSGS[@]} messages -> $DIR/kernel/ ($(awk "BEGIN{printf \"%.1f\", $T1 - $T0}") s; run dir $RUN)" >&2
