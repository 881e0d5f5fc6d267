# Recording A host side: run.sh runs this with bash inside the client netns ($NS_C), with
# $OUT $NS_C $NS_R $PY set (see the oracle README). record.sh copied host.py to $OUT/tools.
exec $PY "$OUT/tools/host.py"
