#!/usr/bin/env python3
"""backup-post.py RUN ORACLE -- after a backup.sh run: match the messages sent (RUN/in/messages.hex)
with the host-side capture (RUN/tap0.pcap) and the guest-side one (RUN/kernel/received.pcap) and
write RUN/kernel/messages.tsv (one line per message: host send time, guest receive time, whether
the guest saw it) and a clock section appended to RUN/kernel/read_at.txt (guest times -> host)."""
import os
import statistics
import sys

RUN, ORACLE = sys.argv[1:3]
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ORACLE, "lib"))
from pcaputil import packets  # noqa: E402

K = os.path.join(RUN, "kernel")
names, msgs = [], []
for line in open(os.path.join(RUN, "in", "messages.hex")):
    line = line.strip()
    if line.startswith("# file "):
        names.append(line[7:])
    elif line and not line.startswith("#"):
        msgs.append(bytes.fromhex(line))


def udp8848(path):
    if not os.path.exists(path):
        return []
    return [(ts, pl) for ts, proto, src, sp, dst, dp, pl, tot in packets(path) if proto == 17 and dp == 8848]


host = udp8848(os.path.join(RUN, "tap0.pcap"))
guest = udp8848(os.path.join(K, "received.pcap"))
rows = ["# n\tfile\tbytes\tt_host_sent\tt_guest_received\tseen_by_guest"]
offsets = []
hi = gi = 0
for n, m in enumerate(msgs):
    th = tg = None
    while hi < len(host):
        hi += 1
        if host[hi - 1][1] == m:
            th = host[hi - 1][0]
            break
    while gi < len(guest):
        gi += 1
        if guest[gi - 1][1] == m:
            tg = guest[gi - 1][0]
            break
    if th is not None and tg is not None:
        offsets.append(th - tg)
    rows.append(f"{n}\t{names[n] if n < len(names) else ''}\t{len(m)}\t{'' if th is None else f'{th:.6f}'}"
                f"\t{'' if tg is None else f'{tg:.6f}'}\t{'yes' if tg is not None else 'no'}")
with open(os.path.join(K, "messages.tsv"), "w") as f:
    f.write("\n".join(rows) + "\n")
seen = sum(1 for r in rows[1:] if r.endswith("yes"))
with open(os.path.join(K, "read_at.txt"), "a") as f:
    f.write("# times above: the guest's CLOCK_REALTIME (adjtimex); host = the host's clock (tap0.pcap)\n")
    if offsets:
        off = statistics.median(offsets)
        f.write(f"# offset host - guest (transit included) median {off:.6f} s, min {min(offsets):.6f}, "
                f"max {max(offsets):.6f}, {len(offsets)} messages\n")
        f.write(f"# last message received (guest) {guest[-1][0]:.6f}\n")
print(f"backup-post.py: {len(msgs)} messages, {sum(1 for _ in host)} seen on tap0, {seen} matched in the guest",
      file=sys.stderr)
