#!/usr/bin/env bash
# Control-plane scale benchmark (issue "operator's interface", item 6):
# a table of SERVICES virtual services × SERVERS real servers is loaded from
# a file, listed, saved, restored and reloaded; a batch of 1,000 real-server
# edits is applied with `lvsadm -R`. Each operation runs REPS times; the
# median wall time is printed in milliseconds.
#
# lvsd runs in a network namespace of its own with one veth (no traffic:
# addresses from 198.18.0.0/15, nothing is sent but lvsd's ARP requests
# for the real servers inside that namespace). Needs root.
#
#   sudo scripts/bench-control.sh [SERVICES [SERVERS [REPS]]]
set -euo pipefail

SERVICES=${1:-10000}
SERVERS=${2:-10}
REPS=${3:-5}
cd "$(dirname "$0")/.."
cargo build --release --locked -p lvsd -p lvsadm >&2
BIN=target/release
NS="lvbench-ctl-$$"
WORK=$(mktemp -d)
SOCK="$WORK/control.sock"
PID=""

cleanup() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The table: service i is 198.18.(100 + i/250/250).(i%250 + 1):(1000 + i/250),
# its servers 198.19.j.(i%250 + 1):(8000 + i/250).
gen() { # WEIGHT_OF_SERVER_0
    awk -v n="$SERVICES" -v m="$SERVERS" -v w0="$1" 'BEGIN {
        for (i = 0; i < n; i++) {
            a = int(i / 250); h = i % 250 + 1;
            printf "director s%d 198.18.%d.%d:%d TCP\n  mode nat\n  balance roundrobin\n", i, 100 + int(a / 250), h, 1000 + a;
            for (j = 0; j < m; j++)
                printf "  server r%d 198.19.%d.%d:%d weight %d\n", j, j, h, 8000 + a, (j == 0 ? w0 : 1);
        }
    }'
}
gen 1 > "$WORK/a.conf"
gen 2 > "$WORK/b.conf"
cp "$WORK/a.conf" "$WORK/lvsd.conf"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
lvsadm() { "$BIN/lvsadm" --control "$SOCK" "$@"; }

ip netns add "$NS"
ip -n "$NS" link add v0 type veth peer name v1
ip -n "$NS" link set v0 up
ip -n "$NS" link set v1 up
ip -n "$NS" addr add 198.18.0.1/15 dev v0

start_lvsd() {
    rm -f "$SOCK"
    ip netns exec "$NS" "$BIN/lvsd" --config "$WORK/lvsd.conf" --control "$SOCK" 2>>"$WORK/lvsd.log" &
    PID=$!
    until [ -S "$SOCK" ] && lvsadm -L -n --timeout >/dev/null 2>&1; do sleep 0.01; done
}
stop_lvsd() {
    kill -TERM "$PID"
    wait "$PID" || true
    PID=""
}

# 1,000 edits of real servers' weights, as `lvsadm -R` lines.
awk -v n="$SERVICES" 'BEGIN {
    for (i = 0; i < 1000 && i < n; i++) {
        a = int(i / 250); h = i % 250 + 1;
        printf "-e -t 198.18.%d.%d:%d -r 198.19.1.%d:%d -m -w 5\n", 100 + int(a / 250), h, 1000 + a, h, 8000 + a;
    }
}' > "$WORK/edits"

declare -A T
for _ in $(seq "$REPS"); do
    t=$(now_ms); "$BIN/lvsd" check "$WORK/a.conf" >/dev/null; T[check]+="$(( $(now_ms) - t )) "
    t=$(now_ms); start_lvsd; T[start]+="$(( $(now_ms) - t )) "
    t=$(now_ms); lvsadm -L -n > "$WORK/list"; T[list]+="$(( $(now_ms) - t )) "
    t=$(now_ms); lvsadm -S -n > "$WORK/save"; T[save]+="$(( $(now_ms) - t )) "
    lvsadm -C
    t=$(now_ms); lvsadm -R < "$WORK/save"; T[restore]+="$(( $(now_ms) - t )) "
    cmp -s "$WORK/save" <(lvsadm -S -n) || { echo "restore did not give back the saved table" >&2; exit 1; }
    cp "$WORK/b.conf" "$WORK/lvsd.conf"
    t=$(now_ms); lvsadm --reload >/dev/null; T[reload]+="$(( $(now_ms) - t )) "
    t=$(now_ms); lvsadm -R < "$WORK/edits"; T[batch_1000]+="$(( $(now_ms) - t )) "
    cp "$WORK/a.conf" "$WORK/lvsd.conf"
    stop_lvsd
done

echo "control plane, $SERVICES services x $SERVERS servers ($(wc -l < "$WORK/save") saved lines), median of $REPS, ms:"
for k in check start list save restore reload batch_1000; do
    printf '  %-11s %6s   (runs: %s)\n' "$k" "$(tr ' ' '\n' <<<"${T[$k]}" | grep . | median)" "${T[$k]}"
done
