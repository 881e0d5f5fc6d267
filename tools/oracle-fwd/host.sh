# tools/oracle-fwd host side: run.sh runs this with bash inside the client netns ($NS_C), with
# $OUT $NS_C $NS_R $PY set (see the oracle README). record.sh copied our tools to $OUT/tools.
exec $PY -B "$OUT/tools/host.py"
