#!/usr/bin/env bash
# Drive Debian's headless Chromium against lvsd's status page.
#
#   browser-check.sh dom  URL OUT.html   # DOM after the page's JS ran
#   browser-check.sh shot URL OUT.png    # 1200x900 screenshot
#
# Exits non-zero if Chromium fails, times out (60 s) or writes nothing
# usable. Chromium's own chatter goes to a log that is printed only on
# failure. Set CHROMIUM=/path/to/binary to use another build.
#
# Virtual time: --virtual-time-budget=5000 makes Chromium run the page on a
# virtual clock and return only once 5 s of *virtual* time have elapsed.
# The clock is paused while network requests are in flight, so the page's
# first fetch("status.json") (started on load) completes and is rendered
# before the DOM is dumped or the screenshot is taken, and the 2 s poll
# timer fires a couple more times within the budget (data-polls ends at 3).
# Checked with Chromium 156 (new headless mode): a status.json that takes
# 3 s of real time to answer still gives data-polls="3" (the run then takes
# ~10 s); a normal run takes ~0.6 s. No extra flag was needed
# (--run-all-compositor-stages-before-draw, a longer budget). Date.now()
# is virtual too, so the page's "updated" clock runs ahead of real time.
set -euo pipefail

usage() {
    echo "usage: $0 dom URL OUT.html | shot URL OUT.png" >&2
    exit 2
}
[ $# -eq 3 ] || usage
mode=$1 url=$2 out=$3
case "$mode" in dom|shot) ;; *) usage ;; esac

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    echo "$0: $chromium not found (apt-get install chromium)" >&2
    exit 1
fi

profile=$(mktemp -d "${TMPDIR:-/tmp}/lvsd-chromium.XXXXXX")
log=$(mktemp "${TMPDIR:-/tmp}/lvsd-chromium-log.XXXXXX")
tmp_out=""
pgid=""
cleanup() {
    # If we are interrupted mid-run, take Chromium's process group with us.
    [ -z "$pgid" ] || kill -KILL -- "-$pgid" 2>/dev/null || true
    rm -rf -- "$profile" "$log"
    [ -z "$tmp_out" ] || rm -f -- "$tmp_out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Crashpad keeps its database under the *default* user data dir
# (~/.config/chromium/Crash Reports), not under --user-data-dir; point that
# into the temp profile so nothing is left in $HOME.
# (--disable-crashpad-for-testing would avoid crashpad altogether, but with
# Chromium 156 it makes the network service crash on an "FD ownership
# violation" and Chromium then exits 0 with an empty DOM.)
export CHROME_CONFIG_HOME="$profile/config"

flags=(
    --headless
    --no-sandbox
    --disable-gpu
    --disable-quic
    --no-first-run
    --disable-background-networking
    --disable-component-update
    --disable-sync
    --user-data-dir="$profile"
    --virtual-time-budget=5000
)

fail() {
    echo "$0: $*" >&2
    if [ -s "$log" ]; then
        # Without a system bus Chromium logs dozens of harmless D-Bus errors,
        # and Debian's wrapper trips over findmnt printing two lines for
        # /dev/shm ("[: ...: unexpected operator"); leave those out.
        echo "--- chromium output (D-Bus noise filtered) ---" >&2
        grep -v -e 'dbus/' -e 'unexpected operator' "$log" | tail -n 40 >&2 || true
    fi
    exit 1
}

# GNU timeout (without --foreground) makes itself the leader of a new
# process group, runs Chromium in it and signals the whole group on expiry,
# so renderer/zygote children die with it; -k escalates to KILL. When the
# browser exits, its zygote children are reparented to init and stay as
# zombies until init reaps them (~1 s in a firecracker VM), so only wait
# (at most 3 s, then KILL) for members that still run before the profile
# is deleted.
group_alive() {
    ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'
}
run() {
    local rc=0 i
    timeout -k 5 60 "$chromium" "${flags[@]}" "$@" "$url" 2>"$log" &
    pgid=$!
    wait "$pgid" || rc=$?
    for i in $(seq 30); do
        group_alive "$pgid" || break
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    pgid=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        fail "chromium timed out after 60 s"
    elif [ "$rc" -ne 0 ]; then
        fail "chromium exited with status $rc"
    fi
    # Chromium exits 0 even when the page did not load (e.g.
    # ERR_CONNECTION_REFUSED); it then writes nothing, but say why.
    local err
    err=$(grep -o 'Page load failed: .*' "$log" | head -n 1) || true
    [ -z "$err" ] || fail "$url: $err"
}

case "$mode" in
dom)
    tmp_out=$(mktemp "${TMPDIR:-/tmp}/lvsd-dom.XXXXXX")
    run --dump-dom >"$tmp_out"
    grep -qi '<html' "$tmp_out" || fail "no DOM dumped"
    mv -f -- "$tmp_out" "$out"
    tmp_out=""
    ;;
shot)
    # --screenshot resolves relative paths against Chromium's cwd; be explicit.
    case "$out" in /*) abs=$out ;; *) abs=$PWD/$out ;; esac
    rm -f -- "$abs"
    run --screenshot="$abs" --window-size=1200,900 --hide-scrollbars
    [ -s "$abs" ] || fail "no screenshot written to $abs"
    [ "$(head -c 8 "$abs" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
        fail "$abs is not a PNG"
    ;;
esac
