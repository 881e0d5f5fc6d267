#!/usr/bin/env bash
# Control-plane scale benchmark (issue "operator's interface", item 6):
# a table of SERVICES virtual services × SERVERS real servers is loaded from
# a file, listed, saved, restored and reloaded; a batch of 1,000 real-server
# edits is applied with `lvsadm -R`. Each operation runs REPS times; the
# median wall time is printed in milliseconds.
#
# Meanwhile a client loop requests http://198.18.0.100/ through lvsd (one
# more NAT service, to a python3 http.server in a real-server namespace),
# one request at a time, bounded (at most 20,000 requests): the report
# gives its median latency outside the operations and the slowest request
# during each operation, so the control plane's cost to forwarding is
# measured, not assumed.
#
# Three network namespaces of its own (client, director, server; addresses
# from 198.18.0.0/15; the table's 100,000 real servers are in 198.19.0.0/16,
# which has no route there, so nothing is sent to them). Needs root,
# python3 and curl (a minimal HTTP responder in python3 is the real server).
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
NC="lvbench-cli-$$"
NSV="lvbench-srv-$$"
WORK=$(mktemp -d)
SOCK="$WORK/control.sock"
PID=""
HTTP_PID=""
PROBE_PID=""

cleanup() {
    for p in "$PROBE_PID" "$HTTP_PID" "$PID"; do
        if [ -n "$p" ]; then
            kill -TERM "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    for n in "$NS" "$NC" "$NSV"; do ip netns del "$n" 2>/dev/null || true; done
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
PROBE="director probe 198.18.0.100:80 TCP
  mode nat
  server web 198.18.1.11:80
"
{ echo "$PROBE"; gen 1; } > "$WORK/a.conf"
{ echo "$PROBE"; gen 2; } > "$WORK/b.conf"
cp "$WORK/a.conf" "$WORK/lvsd.conf"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
lvsadm() { "$BIN/lvsadm" --control "$SOCK" "$@"; }

for n in "$NS" "$NC" "$NSV"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n "$NS" link add d0 type veth peer name c0 netns "$NC"
ip -n "$NS" link add d1 type veth peer name s0 netns "$NSV"
ip -n "$NS" addr add 198.18.0.1/24 dev d0
ip -n "$NS" addr add 198.18.1.1/24 dev d1
ip -n "$NC" addr add 198.18.0.2/24 dev c0
ip -n "$NSV" addr add 198.18.1.11/24 dev s0
for l in "$NS d0" "$NS d1" "$NC c0" "$NSV s0"; do set -- $l; ip -n "$1" link set "$2" up; done
ip -n "$NC" route add default via 198.18.0.1
ip -n "$NSV" route add default via 198.18.1.1
# A minimal HTTP responder (python3's http.server would look its own name
# up in DNS first).
ip netns exec "$NSV" python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.1.11", 80))
s.listen(128)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    c.close()
' &
HTTP_PID=$!

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

# The client loop: "epoch-ms latency-ms ok|failed" per request, until
# killed (failures are expected while lvsd restarts between repetitions).
probe() {
    local n=0
    while [ "$n" -lt 20000 ]; do
        local t0 ok=ok
        t0=$(now_ms)
        ip netns exec "$NC" curl -s -o /dev/null -m 5 http://198.18.0.100/ || ok=failed
        echo "$t0 $(( $(now_ms) - t0 )) $ok"
        n=$((n + 1))
    done
}
WINDOWS="$WORK/windows"
: > "$WINDOWS"
# `timed NAME CMD…`: runs CMD, adds its wall time to T[NAME] and its
# window to $WINDOWS.
timed() {
    local name=$1 t
    shift
    t=$(now_ms)
    "$@"
    local e
    e=$(now_ms)
    T[$name]+="$(( e - t )) "
    echo "$name $t $e" >> "$WINDOWS"
}

declare -A T
started=""
for _ in $(seq "$REPS"); do
    t=$(now_ms); "$BIN/lvsd" check "$WORK/a.conf" >/dev/null; T[check]+="$(( $(now_ms) - t )) "
    t=$(now_ms); start_lvsd; T[start]+="$(( $(now_ms) - t )) "
    if [ -z "$started" ]; then
        # The client loop runs from the first start on (lvsd restarts
        # between repetitions: requests then fail, outside every window).
        probe > "$WORK/probe" &
        PROBE_PID=$!
        started=1
    fi
    sleep 1  # a quiet second: the baseline
    # Two seconds between operations, so that no request overlaps two.
    timed list sh -c "'$BIN/lvsadm' --control '$SOCK' -L -n > '$WORK/list'"
    sleep 2
    timed save sh -c "'$BIN/lvsadm' --control '$SOCK' -S -n > '$WORK/save'"
    # The probe service is put back at once, so the client loop measures
    # forwarding during the restore of the rest.
    grep -e '198.18.0.100:80 ' "$WORK/save" > "$WORK/probe.save"
    grep -v -e '198.18.0.100:80 ' "$WORK/save" > "$WORK/rest.save"
    sleep 2
    timed clear sh -c "'$BIN/lvsadm' --control '$SOCK' -C && '$BIN/lvsadm' --control '$SOCK' -R < '$WORK/probe.save'"
    sleep 2
    timed restore sh -c "'$BIN/lvsadm' --control '$SOCK' -R < '$WORK/rest.save'"
    cmp -s "$WORK/save" <(lvsadm -S -n) || { echo "restore did not give back the saved table" >&2; exit 1; }
    cp "$WORK/b.conf" "$WORK/lvsd.conf"
    sleep 2
    timed reload sh -c "'$BIN/lvsadm' --control '$SOCK' --reload > /dev/null"
    sleep 2
    timed batch_1000 sh -c "'$BIN/lvsadm' --control '$SOCK' -R < '$WORK/edits'"
    cp "$WORK/a.conf" "$WORK/lvsd.conf"
    sleep 1
    stop_lvsd
done

kill -TERM "$PROBE_PID" 2>/dev/null || true
wait "$PROBE_PID" 2>/dev/null || true
PROBE_PID=""
echo "control plane, $SERVICES services x $SERVERS servers ($(wc -l < "$WORK/save") saved lines), median of $REPS, ms;"
echo "client loop through the VIP: slowest request that overlapped each operation (all repetitions):"
# Requests inside no window (and lvsd running) are the baseline.
base=$(awk 'NR == FNR { s[NR] = $2; e[NR] = $3; n = NR; next }
    $3 == "ok" { inside = 0; for (i = 1; i <= n; i++) if ($1 + $2 >= s[i] && $1 <= e[i]) inside = 1;
      if (!inside) print $2 }' "$WINDOWS" "$WORK/probe" | median)
for k in check start list save clear restore reload batch_1000; do
    worst=$(awk -v k="$k" 'NR == FNR { if ($1 == k) { s[++n] = $2; e[n] = $3 } next }
        { for (i = 1; i <= n; i++) if ($1 + $2 >= s[i] && $1 <= e[i]) {
            if ($3 == "failed") f++; else if ($2 > w) w = $2 } }
        END { if (n == 0) print "-"; else printf "%s%s", (w == "" ? 0 : w), (f ? " (" f " failed)" : "") }' "$WINDOWS" "$WORK/probe")
    med=$(tr ' ' '\n' <<<"${T[$k]:-}" | grep . | median || true)
    printf '  %-11s %6s   slowest request %s   (runs: %s)\n' "$k" "${med:--}" "$worst" "${T[$k]:-}"
done
echo "  baseline: median request $base ms outside the operations ($(wc -l < "$WORK/probe") requests)"

