#!/usr/bin/env python3
"""craft.py --src IP --sport P[-P2] --dst IP --dport P --ident N SEG...

Hand-made IPv4 packets from a raw socket (IP header built here), one per SEG (and per source
port, for a range P-P2: every SEG from P, then from P+1, ...; a burst), so that
every packet of a flow -- client side and real-server side -- is chosen by the test.
An extended copy of the oracle's lib/tcpcraft.py for tools/oracle-conn:

  * `--ident N` numbers the IP identification field (N, N+1, ...): the recorder finds
    each packet again in the guest's captures by it (NAT does not change it);
  * SCTP chunks a real server sends (INIT_ACK, COOKIE_ACK, SHUTDOWN_ACK,
    SHUTDOWN_COMPLETE) besides the client ones.

SEG: TCP flag letters [S F R P A U] with an optional '+N' payload length (S, SA, A+10,
     FA, R), or udp+N, or sctp-CHUNK with CHUNK one of: init init-ack cookie-echo
     cookie-ack data sack heartbeat abort shutdown shutdown-ack shutdown-complete error.
Prints one line per packet: `sent SEG SRC:SPORT > DST:DPORT id=N len=L t=EPOCH`."""
import argparse, socket, struct, time

ap = argparse.ArgumentParser()
ap.add_argument("--src", required=True); ap.add_argument("--sport", required=True)
ap.add_argument("--dst", required=True); ap.add_argument("--dport", type=int, required=True)
ap.add_argument("--ident", type=int, required=True)
ap.add_argument("--gap-ms", type=float, default=0); ap.add_argument("--seq", type=int, default=1000)
ap.add_argument("segs", nargs="+")
a = ap.parse_args()


def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8): c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


INIT_BODY = struct.pack("!IIHHI", 0x11223344, 65536, 1, 1, 1000)   # tag, a_rwnd, out, in, TSN
# name -> (chunk type, value bytes); the same table as the replay test's (kernel_conn.rs)
SCTP_CHUNKS = {
    "data": (0, struct.pack("!IHHI", 1000, 0, 0, 0) + b"DATA"),
    "init": (1, INIT_BODY),
    "init-ack": (2, INIT_BODY),
    "sack": (3, struct.pack("!IIHH", 1000, 65536, 0, 0)),
    "heartbeat": (4, struct.pack("!HH", 1, 8) + b"HBHB"),
    "abort": (6, b""),
    "shutdown": (7, struct.pack("!I", 1000)),
    "shutdown-ack": (8, b""),
    "error": (9, b""),
    "cookie-echo": (10, b"COOK"),
    "cookie-ack": (11, b""),
    "shutdown-complete": (14, b""),
}
src, dst = socket.inet_aton(a.src), socket.inet_aton(a.dst)
sk = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
lo, _, hi = a.sport.partition("-")
sports = range(int(lo), int(hi or lo) + 1)
ident = a.ident
for j, seg, sport in ((j, g, p) for p in sports for j, g in enumerate(a.segs)):
    if j == 0:
        seq = a.seq   # a new flow (source port): the sequence number starts again
    kind, _, n = seg.partition("+")
    payload = bytes((0x41 + k % 26) for k in range(int(n or 0)))
    if kind.startswith("sctp-"):
        proto = 132
        ctype, val = SCTP_CHUNKS[kind[5:]]
        chunk = struct.pack("!BBH", ctype, 0, 4 + len(val)) + val
        chunk += b"\0" * ((-len(chunk)) % 4)
        vtag = 0 if ctype == 1 else 0x55667788
        l4 = struct.pack("!HHII", sport, a.dport, vtag, 0) + chunk
        l4 = l4[:8] + struct.pack("<I", crc32c(l4)) + l4[12:]
    elif kind == "udp":
        proto = 17
        l4 = struct.pack("!HHHH", sport, a.dport, 8 + len(payload), 0) + payload
        c = csum(src + dst + struct.pack("!BBH", 0, 17, len(l4)) + l4) or 0xFFFF
        l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
    else:
        proto = 6
        fl = sum({"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32}[ch] for ch in kind)
        ack = 5000 if fl & 16 else 0
        hdr = struct.pack("!HHIIBBHHH", sport, a.dport, seq, ack, 5 << 4, fl, 64240, 0, 0)
        c = csum(src + dst + struct.pack("!BBH", 0, 6, len(hdr) + len(payload)) + hdr + payload)
        l4 = hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload
        seq = (seq + len(payload) + (1 if fl & 3 else 0)) & 0xFFFFFFFF
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident & 0xFFFF, 0x4000,
                     64, proto, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    t = time.time()
    sk.sendto(ip + l4, (a.dst, 0))
    print(f"sent {seg} {a.src}:{sport} > {a.dst}:{a.dport} id={ident} len={20 + len(l4)} t={t:.6f}",
          flush=True)
    ident += 1
    if a.gap_ms: time.sleep(a.gap_ms / 1000)
