#!/usr/bin/env python3
"""Recording A, host side (runs in the oracle's client netns C, started by host.sh; see README.md).

Sends hand-made IPv4 packets: client packets from netns C out of tap0 (raw socket), real-server
packets from netns R out of tap1 (a raw socket created in R), so the director sees exactly the
packets listed below and nothing else. Both host netns drop every IP packet arriving on their
tap (nftables), so neither host kernel answers IPVS's forwarded packets (no RSTs, no ICMP).
Writes $OUT/rec/traffic.tsv: one line per packet, host clock (the clock of tap0.pcap)."""
import ctypes
import os
import socket
import struct
import subprocess
import time

OUT = os.environ["OUT"]
NS_R = os.environ["NS_R"]
SIG = f"{OUT}/.sig"
REC = f"{OUT}/rec"
os.makedirs(f"{OUT}/req", exist_ok=True)
os.makedirs(REC, exist_ok=True)
GAP = 0.05  # seconds between two packets of one flow

V0, V1 = "198.18.0.100", "198.18.0.101"
CLIENTS = ["198.18.2.1", "198.18.2.2", "198.18.2.3", "198.18.2.4", "198.18.2.5", "198.18.2.6",
           "198.18.2.21", "198.18.2.22"]


def sh(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"host: {' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


def await_sig(name, timeout=120):
    end = time.time() + timeout
    while not os.path.exists(f"{SIG}/{name}"):
        if time.time() > end:
            raise SystemExit(f"host: timeout waiting for {name}")
        time.sleep(0.02)


def signal(name):
    open(f"{SIG}/{name}", "w").close()


req_n = 0


def request(cmd, wait=True):
    """Run a shell command in the guest (guest.sh's request loop); returns its output."""
    global req_n
    req_n += 1
    with open(f"{OUT}/req/{req_n}.tmp", "w") as f:
        f.write(cmd + "\n")
    os.rename(f"{OUT}/req/{req_n}.tmp", f"{OUT}/req/{req_n}")
    signal(f"req_{req_n}")
    if not wait:
        return ""
    await_sig(f"done_{req_n}")
    with open(f"{OUT}/resp/{req_n}") as f:
        return f.read()


# ---- raw sockets: one here (netns C), one in netns R ----------------------------------------
libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


sk_c = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
own = os.open("/proc/self/ns/net", os.O_RDONLY)
setns(f"/var/run/netns/{NS_R}")
sk_r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
if libc.setns(own, 0x40000000) != 0:
    raise OSError(ctypes.get_errno(), "setns back")
os.close(own)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


ident = 0x5000
log = open(f"{REC}/traffic.tsv", "w")
log.write("# t_host\tside\tproto\tsrc\tdst\twhat\tip_len\tip_id\n")


def send_ip(sk, proto, src, dst, l4, side, what, sport, dport):
    global ident
    ident += 1
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, 0x4000, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    t = time.time()
    sk.sendto(ip + l4, (dst, 0))
    log.write(f"{t:.6f}\t{side}\t{ {6: 'tcp', 17: 'udp'}[proto]}\t{src}:{sport}\t{dst}:{dport}\t{what}"
              f"\t{20 + len(l4)}\t{ident:#06x}\n")
    log.flush()
    time.sleep(GAP)


class Tcp:
    """One TCP connection; client = caddr:cport -> vaddr:vport, server = the real server the
    director chose (asked from the guest), answering to caddr:cport (NAT)."""

    def __init__(self, caddr, cport, vaddr, vport):
        self.c, self.cp, self.v, self.vp = caddr, cport, vaddr, vport
        self.cseq, self.sseq = 1000, 7000
        self.rs = None

    def _seg(self, src, dst, sp, dp, seq, ack, flags, n):
        fl = sum({"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}[ch] for ch in flags)
        payload = bytes(0x41 + k % 26 for k in range(n))
        hdr = struct.pack("!HHIIBBHHH", sp, dp, seq, ack if fl & 16 else 0, 5 << 4, fl, 64240, 0, 0)
        c = csum(socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr) + n)
                 + hdr + payload)
        return hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload, fl

    def client(self, *segs):
        for s in segs:
            flags, _, n = s.partition("+")
            l4, fl = self._seg(self.c, self.v, self.cp, self.vp, self.cseq, self.sseq, flags, int(n or 0))
            send_ip(sk_c, 6, self.c, self.v, l4, "client", s, self.cp, self.vp)
            self.cseq = (self.cseq + int(n or 0) + (1 if fl & 3 else 0)) & 0xFFFFFFFF

    def server(self, *segs):
        ra, rp = self.rs
        for s in segs:
            flags, _, n = s.partition("+")
            l4, fl = self._seg(ra, self.c, rp, self.cp, self.sseq, self.cseq, flags, int(n or 0))
            send_ip(sk_r, 6, ra, self.c, l4, "server", s, rp, self.cp)
            self.sseq = (self.sseq + int(n or 0) + (1 if fl & 3 else 0)) & 0xFFFFFFFF


def udp(caddr, cport, vaddr, vport, count):
    for k in range(count):
        payload = f"query {k}\n".encode()
        l4 = struct.pack("!HHHH", cport, vport, 8 + len(payload), 0) + payload
        c = csum(socket.inet_aton(caddr) + socket.inet_aton(vaddr) + struct.pack("!BBH", 0, 17, len(l4)) + l4) or 0xFFFF
        l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
        send_ip(sk_c, 17, caddr, vaddr, l4, "client", f"udp+{len(payload)}", cport, vport)


def real_server_of(conn):
    """The destination of conn's entry in the guest's ipvsadm -Lcn."""
    out = request("ipvsadm -L -n -c")
    for line in out.splitlines():
        f = line.split()
        if len(f) == 6 and f[3] == f"{conn.c}:{conn.cp}" and f[4] == f"{conn.v}:{conn.vp}":
            a, p = f[5].rsplit(":", 1)
            return a, int(p)
    raise SystemExit(f"host: no entry for {conn.c}:{conn.cp} in\n{out}")


# ---- setup ------------------------------------------------------------------------------------
for a in CLIENTS:
    sh("ip", "addr", "add", f"{a}/22", "dev", "tap0")
sh("nft", "add table inet osync")
sh("nft", "add chain inet osync in { type filter hook input priority 0; policy accept; }")
sh("nft", "add rule inet osync in iifname tap0 drop")
sh("ip", "netns", "exec", NS_R, "nft", "add table inet osync")
sh("ip", "netns", "exec", NS_R, "nft", "add chain inet osync in { type filter hook input priority 0; policy accept; }")
sh("ip", "netns", "exec", NS_R, "nft", "add rule inet osync in iifname tap1 drop")
# the VM's eth0 MAC for the VIPs (no ARP needed)
for v in (V0, V1):
    sh("ip", "neigh", "replace", v, "lladdr", "52:54:00:00:00:02", "dev", "tap0", "nud", "permanent")
await_sig("ready")

# ---- traffic ----------------------------------------------------------------------------------
# NAT TCP :80 - four connections, SYN + ACK + data (client packets only) -> ESTABLISHED
c1 = Tcp("198.18.2.1", 40001, V0, 80); c1.client("S", "A", "PA+10", "PA+10")
c2 = Tcp("198.18.2.2", 40002, V0, 80); c2.client("S", "A", "PA+10")
c3 = Tcp("198.18.2.3", 40003, V0, 80); c3.client("S", "A", "PA+10", "PA+10")
c4 = Tcp("198.18.2.4", 40004, V0, 80); c4.client("S", "A", "PA+10", "PA+10")
# NAT UDP :53 - two flows of 3 and 4 datagrams
udp("198.18.2.5", 41001, V0, 53, 3)
udp("198.18.2.6", 41002, V0, 53, 4)
# DR TCP :443 persistent /24 - two clients of 198.18.2.0/24
d1 = Tcp("198.18.2.21", 42001, V1, 443); d1.client("S", "A", "PA+10")
d2 = Tcp("198.18.2.22", 42002, V1, 443); d2.client("S", "A", "PA+10", "PA+10")
# closes (the real server's packets come from netns R with its own address, NAT reply direction),
# PAUSE s later, so that the master has flushed the entries above (its buffer is sent once it is
# 2 s old, checked once a second) and the state changes below arrive in a later message
c3.rs = real_server_of(c3)
c4.rs = real_server_of(c4)
time.sleep(float(os.environ.get("PAUSE", "4")))
c3.client("FA"); c3.server("FA"); c3.client("A")                    # client closes first
c4.server("FA"); c4.client("A"); c4.client("FA"); c4.server("A")    # server closes first
log.write(f"# traffic done {time.time():.6f}\n")
log.close()
request("end", wait=False)
