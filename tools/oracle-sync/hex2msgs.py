#!/usr/bin/env python3
"""hex2msgs.py HEXFILE DIR  -- write DIR/messages/000.bin, 001.bin, ... from a text file with one sync
message per line as hex (whitespace inside a line is ignored; blank lines and lines starting with
'#' are skipped; a leading 'hex ' as in syncdecode.py / sync-decoded.txt output is accepted, so
`hex2msgs.py sync-decoded.txt DIR` works too). Existing DIR/messages/*.bin are removed first."""
import glob
import os
import sys

if len(sys.argv) != 3:
    sys.exit(__doc__)
src, d = sys.argv[1:]
mdir = os.path.join(d, "messages")
os.makedirs(mdir, exist_ok=True)
for old in glob.glob(os.path.join(mdir, "*.bin")):
    os.remove(old)
n = 0
for line in open(src):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    if line.startswith("hex "):
        line = line[4:]
    try:
        data = bytes.fromhex("".join(line.split()))
    except ValueError:
        continue          # other text (e.g. the decoded lines of sync-decoded.txt)
    if not data:
        continue
    with open(os.path.join(mdir, f"{n:03d}.bin"), "wb") as f:
        f.write(data)
    n += 1
print(f"hex2msgs.py: {n} messages -> {mdir}", file=sys.stderr)
