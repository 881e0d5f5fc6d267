#!/usr/bin/env python3
"""post.py RUN DEST ORACLE -- turn a Recording A run directory into the vector files (see README.md).

RUN: the run.sh output directory (tap0.pcap, rec/...). DEST: where the vector files go (existing
files of the same names are replaced; nothing else in DEST is touched). ORACLE: the oracle
directory (for lib/pcaputil.py and lib/syncdecode.py)."""
import os
import shutil
import statistics
import struct
import subprocess
import sys

RUN, DEST, ORACLE = sys.argv[1:4]
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ORACLE, "lib"))
from pcaputil import packets  # noqa: E402

REC = os.path.join(RUN, "rec")
os.makedirs(DEST, exist_ok=True)


def rd(name):
    with open(os.path.join(REC, name)) as f:
        return f.read()


# ---- sync.pcap (host side, tap0) and the raw messages ------------------------------------------
subprocess.run(["tcpdump", "-r", os.path.join(RUN, "tap0.pcap"), "-w", os.path.join(DEST, "sync.pcap"),
                "udp port 8848"], check=True, capture_output=True)
with open(os.path.join(DEST, "sync-decoded.txt"), "w") as f:
    subprocess.run([sys.executable, os.path.join(ORACLE, "lib", "syncdecode.py"), os.path.join(DEST, "sync.pcap")],
                   check=True, stdout=f)
host_msgs = [(ts, pl, src, sp) for ts, proto, src, sp, dst, dp, pl, tot in packets(os.path.join(DEST, "sync.pcap"))
             if proto == 17 and dp == 8848]
guest_msgs = [(ts, pl) for ts, proto, src, sp, dst, dp, pl, tot in packets(os.path.join(REC, "guest-eth0.pcap"))
              if proto == 17 and dp == 8848]
mdir = os.path.join(DEST, "messages")
shutil.rmtree(mdir, ignore_errors=True)
os.makedirs(mdir)
rows = ["# n\tfile\tt_host\tt_guest\tsrc\tudp_payload\tversion\tsyncid\tsize\tnr_conns"]
offsets = []
for n, (ts, pl, src, sp) in enumerate(host_msgs):
    with open(os.path.join(mdir, f"{n:03d}.bin"), "wb") as f:
        f.write(pl)
    tg = next((g for g, gp in guest_msgs if gp == pl), None)
    if tg is not None:
        offsets.append(ts - tg)
    v1 = len(pl) >= 8 and pl[0] == 0 and pl[5] == 1
    syncid, size = pl[1], struct.unpack(">H", pl[2:4])[0]
    nr = pl[4] if v1 else pl[0]
    rows.append(f"{n}\tmessages/{n:03d}.bin\t{ts:.6f}\t{'' if tg is None else f'{tg:.6f}'}\t{src}:{sp}\t{len(pl)}"
                f"\t{1 if v1 else 0}\t{syncid}\t{size}\t{nr}")
with open(os.path.join(DEST, "messages.tsv"), "w") as f:
    f.write("\n".join(rows) + "\n")

# ---- clocks: marker pings (111 / 112 payload bytes) in both pcaps ------------------------------


def icmp_echo(path):
    """(ts, payload length) of ICMP echo requests 198.18.0.2 -> 198.18.0.1 (raw parse: pcaputil skips ICMP)."""
    out = []
    with open(path, "rb") as f:
        hdr = f.read(24)
        end = "<" if struct.unpack("<I", hdr[:4])[0] in (0xa1b2c3d4, 0xa1b23c4d) else ">"
        nano = struct.unpack(end + "I", hdr[:4])[0] == 0xa1b23c4d
        while True:
            h = f.read(16)
            if len(h) < 16:
                return out
            sec, frac, incl, _ = struct.unpack(end + "IIII", h)
            d = f.read(incl)
            if d[12:14] != b"\x08\x00" or d[14 + 9] != 1:
                continue
            ip = d[14:]
            ihl = (ip[0] & 15) * 4
            tot = struct.unpack(">H", ip[2:4])[0]
            if ip[ihl] == 8:
                out.append((sec + frac / (1e9 if nano else 1e6), tot - ihl - 8))


mh = {ln: ts for ts, ln in icmp_echo(os.path.join(RUN, "tap0.pcap"))}
mg = {ln: ts for ts, ln in icmp_echo(os.path.join(REC, "guest-eth0.pcap"))}
for ln in (111, 112):
    if ln in mh and ln in mg:
        offsets.append(mh[ln] - mg[ln])
off = statistics.median(offsets) if offsets else None

guest = {}
for line in rd("read_at.guest").splitlines():
    k, _, v = line.partition(" ")
    guest[k] = v
lines = [
    "# Times of Recording A. Two clocks:",
    "#   host  = the host's CLOCK_REALTIME: timestamps of tap0.pcap / sync.pcap / messages.tsv t_host / traffic.tsv",
    "#   guest = the VM's CLOCK_REALTIME (busybox adjtimex, microseconds): guest-side eth0 capture (messages.tsv",
    "#           t_guest) and the *_start/*_end stamps taken around each table read",
    "# offset = host - guest, measured on packets seen in both captures (every sync message and two marker",
    "#   pings the guest sent right before and right after the reads); host_est = guest + median offset.",
]
if offsets:
    lines.append(f"offset_median {off:.6f}")
    lines.append(f"offset_min {min(offsets):.6f}")
    lines.append(f"offset_max {max(offsets):.6f}")
    lines.append(f"offset_samples {len(offsets)}")
if host_msgs:
    lines.append(f"first_message_host {host_msgs[0][0]:.6f}")
    lines.append(f"last_message_host {host_msgs[-1][0]:.6f}")
for ln, name in ((111, "marker_before_reads"), (112, "marker_after_reads")):
    if ln in mh:
        lines.append(f"{name}_host {mh[ln]:.6f}" + (f" guest {mg[ln]:.6f}" if ln in mg else ""))
for k, v in guest.items():
    if k == "uptime":
        continue
    try:
        g = float(v)
    except ValueError:
        continue
    s = f"{k} guest {g:.6f}"
    if off is not None:
        s += f" host_est {g + off:.6f}"
        if host_msgs:
            s += f" (last message + {g + off - host_msgs[-1][0]:.3f} s)"
    lines.append(s)
files = {"conns_start": "conns.txt", "conn_sync_start": "conn_sync.txt", "services_start": "services.txt",
         "daemon_start": "daemon.txt", "stats_start": "stats.txt", "proc_conn_start": "proc_ip_vs_conn.txt"}
lines.append("# file -> read between *_start and *_end: " + ", ".join(f"{v} ({k[:-6]})" for k, v in files.items()))
with open(os.path.join(DEST, "read_at.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")

for name in ("config.txt", "conns.txt", "conn_sync.txt", "services.txt", "daemon.txt", "stats.txt",
             "proc_ip_vs_conn.txt", "proc_ip_vs.txt", "guest-info.txt", "traffic.tsv"):
    shutil.copy(os.path.join(REC, name), os.path.join(DEST, name))
for name in ("tap0.pcap", "tap1.pcap"):
    shutil.copy(os.path.join(RUN, name), os.path.join(DEST, name.replace(".pcap", "-all.pcap")))
print(f"post.py: {len(host_msgs)} sync messages "
      f"({sum((pl[4] if pl[0] == 0 and pl[5] == 1 else pl[0]) for _, pl, _, _ in host_msgs)} entries), "
      f"{len(guest_msgs)} seen in the guest capture; offset host-guest "
      + (f"{off:.6f} s ({min(offsets):.6f}..{max(offsets):.6f})" if offsets else "unknown"), file=sys.stderr)
