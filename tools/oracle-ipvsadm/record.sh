#!/bin/bash
# record.sh [OUT_JSON]  -- record ipvsadm's output for commands.txt on the
# oracle kernel (/work/shared/oracle, ORACLE_KERNEL, default 6.18) and write
# it as one JSON file (default: crates/lvsd/tests/vectors/ipvsadm-6.18.json),
# which crates/lvsd/tests/e2e_ipvsadm.rs replays through lvsadm against
# lvsd. Needs root and python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ORACLE=${ORACLE:-/work/shared/oracle}
export ORACLE_KERNEL=${ORACLE_KERNEL:-6.18}
DEST=${1:-$HERE/../../crates/lvsd/tests/vectors/ipvsadm-$ORACLE_KERNEL.json}
. "$ORACLE/lib/kernel-env.sh"
WORK=${IPVS_ORACLE_WORK:-/var/tmp/ipvs-oracle}
"$ORACLE/build.sh" >/dev/null
mkdir -p "$WORK/runs"
RUN=$(mktemp -d "$WORK/runs/ipvsadm.XXXXXX")
cp "$HERE/commands.txt" "$RUN/"
"$ORACLE/run.sh" -q -n -t 300 -o "$RUN" "$HERE/guest.sh"
python3 - "$RUN/rec" "$DEST" <<'PY'
import json, os, sys
rec, dest = sys.argv[1], sys.argv[2]
n = 1
out = {"kernel": open(os.path.join(rec, "kernel")).read().strip(),
       "ipvsadm": open(os.path.join(rec, "ipvsadm-version")).read(),
       "recorded_with": "tools/oracle-ipvsadm/record.sh", "commands": []}
while os.path.exists(os.path.join(rec, f"{n}.args")):
    r = lambda ext: open(os.path.join(rec, f"{n}.{ext}"), encoding="utf-8", errors="surrogateescape").read()
    out["commands"].append({"args": r("args"), "stdout": r("out"), "stderr": r("err"), "rc": int(r("rc"))})
    n += 1
os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
with open(dest, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"record.sh: {n - 1} commands -> {dest}", file=sys.stderr)
PY
