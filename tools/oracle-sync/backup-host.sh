# tools/oracle-sync host side: run.sh runs this with bash inside the client netns ($NS_C, tap0
# 198.18.0.1), with $OUT $ORACLE $PY and the signal/await helpers. Sends $OUT/in/messages.hex
# (one message per line, in order) to 224.0.0.81:8848 with TTL 1 out of tap0 (the oracle's
# lib/sendsync.py), logging the host time of each send.
await ready 120 || exit 1
date +%s.%N > "$OUT/kernel/send_start.host"
$PY "$ORACLE/lib/sendsync.py" --gap-ms "${GAP_MS:-50}" "$OUT/in/messages.hex" > "$OUT/kernel/sent.txt" 2>&1
rc=$?
date +%s.%N > "$OUT/kernel/send_end.host"
signal sent
exit $rc
