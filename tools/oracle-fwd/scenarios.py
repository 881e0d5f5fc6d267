"""tools/oracle-fwd scenarios: what each scenario configures in the director and which packets it
sends.  Every packet is built here (pkt.py), byte for byte; the recorder sends it as an Ethernet
frame from the client side (tap0) or the real-server side (tap1) and records what the director
transmitted.

Address plan for the scenario at index i of SCENARIOS (stable, also for a subset run):
  VIP     198.18.100.(10+i)                      (on the guest's lo unless the scenario says not)
  client  198.18.1.(10+i),      MAC 02:00:00:01:00:XX (XX = 10+i in hex)
  rs k    198.18.64.(40+4i+k),  MAC 02:00:00:64:00:YY (YY = 40+4i+k in hex), k = 0..3
IPv6 scenarios (@scenario6, family 6; all after the IPv4 ones) use the same numbers, written as
the last group of an address in 2001:db8::/32 (the decimal digits read as hex: i = 26 gives
2001:db8:100::36), and the same MACs:
  VIP     2001:db8:100::(10+i)/128 on lo,  client 2001:db8:1::(10+i),  rs k 2001:db8:64::(40+4i+k)
The guest gets permanent neighbour entries for these (so no ARP / neighbour discovery, and the
destination MAC of every frame names the host it was meant for); the host namespaces never
answer (policy rules drop all their IPv4 input, IPv6 is disabled on the taps, and the frames
are addressed to MACs their taps do not have).
IP IDs: 0x4000 + 0x100*i + step number (fixed, so every input packet is reproducible); IPv6
packets carry that number as their flow label instead.
Mixed-family tunnel scenarios (tun46-*: IPv4 service, IPv6 real server; tun64-*: the reverse)
give the real server the other family's address with the same number (s.rs(family=...))."""
import struct

import pkt as P

TOS = 0xbb          # DSCP 46 + ECN CE, as the spec's verification runs
PMTU_DISC_DEFAULT = "1"


class Scn:
    def __init__(self, idx, name, desc, family=4):
        self.idx, self.name, self.desc, self.family = idx, name, desc, family
        self.vip = f"198.18.100.{10 + idx}" if family == 4 else f"2001:db8:100::{10 + idx}"
        self.local_vip = True
        client = f"198.18.1.{10 + idx}" if family == 4 else f"2001:db8:1::{10 + idx}"
        self.hosts = {"client": ("client", client, f"02:00:00:01:00:{10 + idx:02x}")}
        self.ipvsadm, self.sysctls, self.routes, self.steps, self.extra_vips = [], {}, [], [], []
        self.cport = 40000 + 10 * idx

    def rs(self, k=0, name=None, family=None):
        """Real server k; `family` (4 or 6) other than the scenario's gives a mixed-family tunnel
        real server (same number, the other family's address)."""
        n = 40 + 4 * self.idx + k
        name = name or ("rs" if k == 0 else f"rs{k + 1}")
        addr = f"198.18.64.{n}" if (family or self.family) == 4 else f"2001:db8:64::{n}"
        self.hosts[name] = ("rs", addr, f"02:00:00:64:00:{n:02x}")
        return self.hosts[name][1]

    def uses_ipv6(self):
        """An IPv6 scenario, or an IPv4 one with an IPv6 (tunnel) real server."""
        return self.family == 6 or any(":" in a for _, a, _ in self.hosts.values())

    @property
    def client(self):
        return self.hosts["client"][1]

    def ident(self):
        return 0x4000 + 0x100 * self.idx + len(self.steps)

    def send(self, frm, build, note, **kw):
        """build: a function of the IP ID returning the packet; frm: a host name."""
        self.steps.append({"from": frm, "in": build(self.ident()), "note": note, **kw})

    def svc(self, args):
        self.ipvsadm.append(args)

    def ep(self, addr, port):
        """addr:port as ipvsadm writes it ([addr]:port for IPv6)."""
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def ctcp(s, flags, *, port=None, vip=None, vport=80, tos=TOS, ttl=64, df=True, n=0, seq=1000, ack=None,
         total=None):
    """A client TCP packet to VIP:vport; `total` = wanted packet length (IPv4 total length, or
    IPv6 header + payload; the TCP payload is computed). IPv6: tos = traffic class, ttl = hop
    limit, the IP ID = flow label (see pkt.py)."""
    if total is not None:
        n = total - (60 if s.family == 6 else 40)
    return lambda i: P.tcp(s.client, vip or s.vip, port or s.cport, vport, flags, seq=seq, ack=ack, n=n,
                           tos=tos, ttl=ttl, df=df, ident=i)


SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


def scenario6(fn):
    """An IPv6 scenario (family 6): IPv6 addresses, packets and ipvsadm syntax."""
    fn.family = 6
    return scenario(fn)


@scenario
def nat_tcp(s):
    "NAT TCP: SYN, the real server's SYN-ACK, data both ways, TTL 1 from either side, FIN"
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:8080 -m -w 1")
    c, cp = s.client, s.cport
    s.send("client", ctcp(s, "S"), "SYN client -> VIP:80 (new NAT connection)")
    s.send("rs", lambda i: P.tcp(rs, c, 8080, cp, "SA", seq=5000, ack=1001, ident=i),
           "SYN-ACK real server -> client (OUT: source becomes VIP:80)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, n=10), "ACK + 10 bytes client -> VIP")
    s.send("rs", lambda i: P.tcp(rs, c, 8080, cp, "PA", seq=5001, ack=1011, n=20, ident=i),
           "PSH-ACK + 20 bytes real server -> client")
    s.send("client", ctcp(s, "A", seq=1011, ack=5021, n=10, ttl=1), "client data with TTL 1")
    s.send("client", ctcp(s, "A", seq=1011, ack=5021, n=10, ttl=2), "client data with TTL 2")
    s.send("rs", lambda i: P.tcp(rs, c, 8080, cp, "A", seq=5021, ack=1021, n=20, ttl=1, ident=i),
           "real-server data with TTL 1 (forwarded: IP stack's TTL check)")
    s.send("client", ctcp(s, "FA", seq=1021, ack=5021), "FIN-ACK client -> VIP")


@scenario
def nat_udp_csum0(s):
    "NAT UDP: datagrams with UDP checksum 0 in both directions, and one with a checksum"
    rs = s.rs()
    s.svc(f"-A -u {s.vip}:53 -s rr")
    s.svc(f"-a -u {s.vip}:53 -r {rs}:5353 -m -w 1")
    c, cp = s.client, s.cport
    s.send("client", lambda i: P.udp(c, s.vip, cp, 53, n=20, csum0=True, tos=TOS, ident=i),
           "UDP client -> VIP:53, checksum 0")
    s.send("rs", lambda i: P.udp(rs, c, 5353, cp, n=30, csum0=True, ident=i),
           "UDP real server -> client, checksum 0")
    s.send("client", lambda i: P.udp(c, s.vip, cp, 53, n=21, tos=TOS, ident=i),
           "UDP client -> VIP:53 with a checksum")
    s.send("rs", lambda i: P.udp(rs, c, 5353, cp, n=31, ident=i),
           "UDP real server -> client with a checksum")


@scenario
def dr_tcp(s):
    "Direct routing: SYN, data, TTL 1 (the frame goes to the real server's MAC, IP unchanged)"
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:80 -g -w 1")
    s.send("client", ctcp(s, "S"), "SYN client -> VIP:80 (DR)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, n=100), "ACK + 100 bytes")
    s.send("client", ctcp(s, "A", seq=1101, ack=5001, n=10, ttl=1), "data with TTL 1")


def tunnel(s, ttype, opts, *, df=True, note=""):
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:80 -i --tun-type {ttype}{opts} -w 1")
    s.send("client", ctcp(s, "S", df=df), f"SYN client -> VIP:80 ({ttype}{note})")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, n=100, df=df), "ACK + 100 bytes")
    s.send("client", ctcp(s, "A", seq=1101, ack=5001, n=100, df=df), "ACK + 100 bytes (again)")
    s.send("client", ctcp(s, "S", port=s.cport + 1, df=df), "SYN from a second client port")


@scenario
def tun_ipip_df(s):
    "IPIP tunnel, inner DF set: outer DF copied, outer ID 0"
    tunnel(s, "ipip", "", df=True)


@scenario
def tun_ipip_nodf(s):
    "IPIP tunnel, inner DF clear: outer DF clear, outer ID from the kernel's generator"
    tunnel(s, "ipip", "", df=False)


@scenario
def tun_gue_nocsum(s):
    "GUE tunnel (port 6080) without UDP checksum"
    tunnel(s, "gue", " --tun-port 6080 --tun-nocsum")


@scenario
def tun_gue_csum(s):
    "GUE tunnel (port 6080) with UDP checksum"
    tunnel(s, "gue", " --tun-port 6080 --tun-csum")


@scenario
def tun_gue_remcsum(s):
    "GUE tunnel (port 6080) with remote checksum offload flag"
    tunnel(s, "gue", " --tun-port 6080 --tun-remcsum")


@scenario
def tun_gre_nocsum(s):
    "GRE tunnel without checksum"
    tunnel(s, "gre", " --tun-nocsum")


@scenario
def tun_gre_csum(s):
    "GRE tunnel with checksum"
    tunnel(s, "gre", " --tun-csum")


@scenario
def tun_ecn(s):
    "IPIP: outer TOS from inner TOS for every ECN codepoint (CE -> ECT(0))"
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:80 -i --tun-type ipip -w 1")
    s.send("client", ctcp(s, "S", tos=0x02), "SYN, TOS 0x02 (ECT(0))")
    seq = 1001
    for tos, what in ((0x03, "CE"), (0x01, "ECT(1)"), (0x00, "not-ECT"), (0xb8, "DSCP 46 not-ECT"),
                      (0xb9, "DSCP 46 ECT(1)"), (0xba, "DSCP 46 ECT(0)"), (0xbb, "DSCP 46 CE"),
                      (0xff, "all bits")):
        s.send("client", ctcp(s, "A", seq=seq, ack=5001, n=10, tos=tos), f"data, TOS {tos:#04x} ({what})")
        seq += 10


def mtu_services(s, kinds, *, df=True, boundary=True):
    """One service port per tunnel kind (80, 81, ...), each with its own real server; per port a
    SYN, then (with `boundary`) packets of exactly tmtu and tmtu+1 bytes, and a 1500-byte one."""
    for k, (ttype, opts, tmtu) in enumerate(kinds):
        vport = 80 + k
        rs = s.rs(k)
        s.svc(f"-A -t {s.vip}:{vport} -s rr")
        s.svc(f"-a -t {s.vip}:{vport} -r {rs}:{vport} -i --tun-type {ttype}{opts} -w 1")
        port = s.cport + k
        s.send("client", ctcp(s, "S", port=port, vport=vport, df=df), f"{ttype}{opts}: SYN to :{vport}")
        seq = 1001
        sizes = [(tmtu, "= tunnel MTU"), (tmtu + 1, "= tunnel MTU + 1"), (1500, "")] if boundary else \
            [(1500, "")]
        for total, what in sizes:
            s.send("client", ctcp(s, "A", port=port, vport=vport, df=df, seq=seq, ack=5001, total=total),
                   f"{ttype}{opts}: {'DF' if df else 'no-DF'} data packet of {total} bytes {what}".rstrip())
            seq += total - 40


KINDS = [("ipip", "", 1480), ("gue", " --tun-port 6080 --tun-nocsum", 1468),
         ("gre", " --tun-nocsum", 1476), ("gre", " --tun-csum", 1472)]


@scenario
def tun_mtu_df(s):
    "Tunnel MTU (link MTU 1500): DF packets of exactly the tunnel MTU pass, one byte more gets ICMP 3/4"
    mtu_services(s, KINDS)


@scenario
def tun_mtu_nodf(s):
    "Tunnel MTU: non-DF packets over the tunnel MTU -> outer packet fragmented by the director"
    mtu_services(s, KINDS[:3], df=False, boundary=False)


@scenario
def tun_pmtu0(s):
    "pmtu_disc = 0: no tunnel MTU check, outer DF 0 even for DF inner packets, outer fragmented"
    s.sysctls["pmtu_disc"] = "0"
    mtu_services(s, KINDS[:3], boundary=False)


@scenario
def nat_mtu_df(s):
    "NAT with a 1400-byte route MTU to the real server: DF over it -> ICMP 3/4 1400, non-DF fragmented"
    rs = s.rs()
    s.routes.append({"dst": f"{rs}/32", "dev": "eth1", "mtu": 1400})
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:8080 -m -w 1")
    s.send("client", ctcp(s, "S"), "SYN")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1400), "DF data packet of 1400 bytes (= route MTU)")
    s.send("client", ctcp(s, "A", seq=2361, ack=5001, total=1401), "DF data packet of 1401 bytes")
    s.send("client", ctcp(s, "A", seq=2361, ack=5001, total=1500, df=False), "non-DF data packet of 1500 bytes")


@scenario
def dr_mtu_df(s):
    "DR with a 1400-byte route MTU to the real server: DF over it -> ICMP 3/4 1400"
    rs = s.rs()
    s.routes.append({"dst": f"{rs}/32", "dev": "eth1", "mtu": 1400})
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:80 -g -w 1")
    s.send("client", ctcp(s, "S"), "SYN")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1400), "DF data packet of 1400 bytes (= route MTU)")
    s.send("client", ctcp(s, "A", seq=2361, ack=5001, total=1401), "DF data packet of 1401 bytes")
    s.send("client", ctcp(s, "A", seq=2361, ack=5001, total=1500, df=False), "non-DF data packet of 1500 bytes")


@scenario
def nat_icmp_in(s):
    "ICMP errors from the client about the director's NAT replies (VIP:80 -> client) -> to the real server"
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:8080 -m -w 1")
    c, cp, v = s.client, s.cport, s.vip
    s.send("client", ctcp(s, "S"), "SYN")
    synack_id = s.ident()
    s.send("rs", lambda i: P.tcp(rs, c, 8080, cp, "SA", seq=5000, ack=1001, ident=i), "SYN-ACK from the real server")
    # the SYN-ACK as the client received it: VIP:80 -> client, TTL 63 (forwarded once)
    seen = P.tcp(v, c, 80, cp, "SA", seq=5000, ack=1001, ttl=63, ident=synack_id)
    s.send("client", lambda i: P.icmp_fragneeded(c, v, seen, 1200, ident=i, df=False),
           "ICMP 3/4 (MTU 1200) client -> VIP quoting the whole SYN-ACK it received")
    s.send("client", lambda i: P.icmp_err(c, v, 3, 3, seen[:28], ident=i, df=False),
           "ICMP 3/3 client -> VIP quoting IP header + 8 bytes of the SYN-ACK")
    s.send("client", lambda i: P.icmp_err(c, v, 11, 0, seen, ident=i, df=False, ttl=1),
           "ICMP 11/0 with TTL 1")


@scenario
def nat_icmp_out(s):
    "ICMP errors from the NAT real server about the client's packet (client -> RIP:8080) -> to the client"
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:8080 -m -w 1")
    c, cp = s.client, s.cport
    syn_id = s.ident()
    s.send("client", ctcp(s, "S"), "SYN")
    # the SYN as the real server received it: client -> RIP:8080, TTL 63
    seen = P.tcp(c, rs, cp, 8080, "S", tos=TOS, ttl=63, ident=syn_id)
    s.send("rs", lambda i: P.icmp_err(rs, c, 3, 3, seen, ident=i, df=False),
           "ICMP 3/3 real server -> client quoting the whole SYN it received")
    s.send("rs", lambda i: P.icmp_fragneeded(rs, c, seen[:28], 1000, ident=i, df=False),
           "ICMP 3/4 (MTU 1000) real server -> client quoting IP header + 8 bytes")


@scenario
def dr_icmp_in(s):
    "ICMP error from the client about a DR connection (quoting VIP:80 -> client) -> forwarded to the RS MAC"
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:80 -g -w 1")
    c, cp, v = s.client, s.cport, s.vip
    s.send("client", ctcp(s, "S"), "SYN")
    seen = P.tcp(v, c, 80, cp, "SA", seq=5000, ack=1001, ttl=64, ident=0x7777)
    s.send("client", lambda i: P.icmp_fragneeded(c, v, seen, 1200, ident=i, df=False),
           "ICMP 3/4 (MTU 1200) client -> VIP quoting the real server's SYN-ACK (VIP:80 -> client)")


@scenario
def tun_icmp_in(s):
    "ICMP 3/4 from the tunnel path (quoting the director's IPIP packet) -> new ICMP 3/4 to the client"
    rs = s.rs()
    router = s.rs(1, "router")
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:80 -i --tun-type ipip -w 1")
    s.send("client", ctcp(s, "S"), "SYN (IPIP)")
    dip = "198.18.64.1"
    d_id = s.ident()
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1440), "DF data packet of 1440 bytes")
    inner = P.tcp(s.client, s.vip, s.cport, 80, "A", seq=1001, ack=5001, n=1400, tos=TOS, ttl=63, ident=d_id)
    outer = P.ipv4(dip, rs, 4, inner, tos=0xba, ttl=63, ident=0, df=True)
    s.send("router", lambda i: P.icmp_fragneeded(router, dip, outer[:576 - 28], 1400, ident=i, df=False),
           "ICMP 3/4 (MTU 1400) router -> director quoting that IPIP packet (first 548 bytes)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1400), "DF data packet of 1400 bytes (over the new PMTU)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1380), "DF data packet of 1380 bytes")
    inner2 = P.tcp(s.client, s.vip, s.cport, 80, "A", seq=1001, ack=5001, n=1400, tos=TOS, ttl=63, df=False,
                   ident=0x7778)
    outer2 = P.ipv4(dip, rs, 4, inner2, tos=0xba, ttl=63, ident=0x1234, df=False)
    s.send("router", lambda i: P.icmp_fragneeded(router, dip, outer2[:576 - 28], 1300, ident=i, df=False),
           "ICMP 3/4 (MTU 1300) quoting an IPIP packet whose inner packet has no DF")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1380), "DF data packet of 1380 bytes (after that)")


@scenario
def stray_ack(s):
    "Packets without a connection: local VIP (stack answers), a NAT service on a non-local VIP, no service"
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:8080 -m -w 1")
    s.svc(f"-A -u {s.vip}:53 -s rr")
    s.svc(f"-a -u {s.vip}:53 -r {rs}:5353 -m -w 1")
    # a second VIP that is not a local address: routed on (to a host on the real-server link)
    nl = f"198.18.101.{10 + s.idx}"
    s.extra_vips.append(nl)
    s.hosts["nlvip"] = ("rs", nl, f"02:00:00:65:00:{10 + s.idx:02x}")
    s.routes.append({"dst": f"{nl}/32", "dev": "eth1"})
    s.svc(f"-A -t {nl}:80 -s rr")
    s.svc(f"-a -t {nl}:80 -r {rs}:8080 -m -w 1")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001), "ACK to VIP:80 (NAT service, no connection)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, n=10), "ACK + 10 bytes to VIP:80, no connection")
    s.send("client", ctcp(s, "FA", seq=1001, ack=5001), "FIN-ACK to VIP:80, no connection")
    s.send("client", ctcp(s, "R", seq=1001, ack=0), "RST to VIP:80, no connection")
    s.send("client", ctcp(s, "S", vport=81), "SYN to VIP:81 (no service, no listener)")
    s.send("client", lambda i: P.udp(s.client, s.vip, s.cport, 54, n=10, tos=TOS, ident=i),
           "UDP to VIP:54 (no service)")
    s.send("client", ctcp(s, "A", vip=nl, seq=1001, ack=5001), f"ACK to {nl}:80 (NAT service, VIP not local, routed to the RS link)")
    s.send("client", ctcp(s, "S", vip=nl), f"SYN to {nl}:80 (NAT service, VIP not local, routed to the RS link)")


@scenario
def unreach(s):
    "New connection to a service without a usable real server -> ICMP 3/3 from the VIP"
    rs = s.rs()
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-A -t {s.vip}:81 -s rr")
    s.svc(f"-a -t {s.vip}:81 -r {rs}:8080 -m -w 0")
    s.svc(f"-A -u {s.vip}:53 -s rr")
    s.send("client", ctcp(s, "S"), "SYN to VIP:80 (service without real servers)")
    s.send("client", ctcp(s, "S", vport=81), "SYN to VIP:81 (only real server has weight 0)")
    s.send("client", lambda i: P.udp(s.client, s.vip, s.cport, 53, n=10, tos=TOS, ident=i),
           "UDP to VIP:53 (service without real servers)")
    s.send("client", lambda i: P.udp(s.client, s.vip, s.cport, 53, n=1400, tos=TOS, ident=i),
           "UDP with 1400 bytes of payload to VIP:53 (how much does the ICMP quote?)")


@scenario
def nat_udp_frag(s):
    "NAT UDP datagram arriving in two fragments (reassembled, translated, fragmented again)"
    rs = s.rs()
    s.svc(f"-A -u {s.vip}:53 -s rr")
    s.svc(f"-a -u {s.vip}:53 -r {rs}:5353 -m -w 1")
    ident = s.ident()
    whole = P.udp(s.client, s.vip, s.cport, 53, n=1972, tos=TOS, ident=ident, df=False)
    l4 = whole[20:]
    f1 = P.ipv4(s.client, s.vip, 17, l4[:1480], tos=TOS, ident=ident, df=False, mf=True)
    f2 = P.ipv4(s.client, s.vip, 17, l4[1480:], tos=TOS, ident=ident, df=False, frag_off=1480)
    s.send("client", lambda i: f1, "first fragment (1500 bytes, MF) of a 2000-byte UDP datagram")
    s.send("client", lambda i: f2, "second fragment (offset 1480)")


def tun_icmp_path(s, ttype, opts, overhead, encap):
    """A tunnel real server; the path to it reports FRAG_NEEDED twice (1400, then 1300) quoting
    the director's outer packets; between them the client probes with DF packets."""
    rs = s.rs()
    router = s.rs(1, "router")
    s.svc(f"-A -t {s.vip}:80 -s rr")
    s.svc(f"-a -t {s.vip}:80 -r {rs}:80 -i --tun-type {ttype}{opts} -w 1")
    dip = "198.18.64.1"
    s.send("client", ctcp(s, "S"), f"SYN ({ttype})")

    def outer_of(ident, total):
        inner = P.tcp(s.client, s.vip, s.cport, 80, "A", seq=1001, ack=5001, n=total - 40, tos=TOS, ttl=63,
                      ident=ident)
        return P.ipv4(dip, rs, encap[0], encap[1](inner), tos=0xba, ttl=63, ident=0, df=True)

    d1 = s.ident()
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1440), "DF data packet of 1440 bytes")
    o1 = outer_of(d1, 1440)
    s.send("router", lambda i: P.icmp_fragneeded(router, dip, o1[:548], 1400, ident=i, df=False),
           f"ICMP 3/4 (MTU 1400) router -> director quoting that {ttype} packet (first 548 bytes)")
    t1 = 1400 - overhead
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1400), "DF data packet of 1400 bytes")
    d2 = s.ident()
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=t1), f"DF data packet of {t1} bytes (1400 - overhead)")
    o2 = outer_of(d2, t1)
    s.send("router", lambda i: P.icmp_fragneeded(router, dip, o2[:548], 1300, ident=i, df=False),
           f"ICMP 3/4 (MTU 1300) quoting that {ttype} packet")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=t1), f"DF data packet of {t1} bytes again")


@scenario
def tun_icmp_in_gue(s):
    "Like tun-icmp-in for a GUE real server (the path reports MTU 1400, then 1300)"
    tun_icmp_path(s, "gue", " --tun-port 6080 --tun-nocsum", 32,
                  (17, lambda inner: __import__("struct").pack("!HHHH", 40000, 6080, 12 + len(inner), 0)
                   + bytes([0, 4, 0, 0]) + inner))


@scenario
def tun_icmp_in_gre(s):
    "Like tun-icmp-in for a GRE real server without checksum (the path reports MTU 1400, then 1300)"
    tun_icmp_path(s, "gre", " --tun-nocsum", 24, (47, lambda inner: bytes([0, 0, 8, 0]) + inner))


@scenario
def nat_sctp(s):
    "NAT SCTP: CRC32c recomputed when the port changes, left alone when it does not (also a bad CRC)"
    rs = s.rs()
    s.svc(f"-A --sctp-service {s.vip}:3868 -s rr")
    s.svc(f"-a --sctp-service {s.vip}:3868 -r {rs}:3869 -m -w 1")
    s.svc(f"-A --sctp-service {s.vip}:3870 -s rr")
    s.svc(f"-a --sctp-service {s.vip}:3870 -r {rs}:3870 -m -w 1")
    c, v, cp = s.client, s.vip, s.cport
    s.send("client", lambda i: P.sctp(c, v, cp, 3868, tos=TOS, ident=i), "INIT to VIP:3868 (NAT to port 3869)")
    s.send("rs", lambda i: P.sctp(rs, c, 3869, cp, chunk="data", ident=i), "DATA real server:3869 -> client")
    s.send("client", lambda i: P.sctp(c, v, cp + 1, 3870, tos=TOS, ident=i), "INIT to VIP:3870 (NAT, same port)")
    s.send("rs", lambda i: P.sctp(rs, c, 3870, cp + 1, chunk="data", ident=i), "DATA real server:3870 -> client")
    s.send("client", lambda i: P.sctp(c, v, cp, 3868, chunk="data", bad_crc=True, tos=TOS, ident=i),
           "DATA with a wrong CRC32c to VIP:3868 (port changes)")
    s.send("client", lambda i: P.sctp(c, v, cp + 1, 3870, chunk="data", bad_crc=True, tos=TOS, ident=i),
           "DATA with a wrong CRC32c to VIP:3870 (same port)")


# ----- IPv6 (family 6): after every IPv4 scenario, so that those keep their indexes ------------

@scenario6
def nat6_tcp(s):
    "NAT66 TCP: SYN, the real server's SYN-ACK, data both ways, hop limit 1 from either side, FIN, a second connection"
    rs = s.rs()
    s.svc(f"-A -t {s.ep(s.vip, 80)} -s rr")
    s.svc(f"-a -t {s.ep(s.vip, 80)} -r {s.ep(rs, 8080)} -m -w 1")
    c, cp = s.client, s.cport
    s.send("client", ctcp(s, "S"), "SYN client -> VIP:80 (new NAT66 connection)")
    s.send("rs", lambda i: P.tcp(rs, c, 8080, cp, "SA", seq=5000, ack=1001, ident=i),
           "SYN-ACK real server -> client (OUT: source becomes VIP:80)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, n=100), "ACK + 100 bytes client -> VIP")
    s.send("rs", lambda i: P.tcp(rs, c, 8080, cp, "PA", seq=5001, ack=1101, n=20, ident=i),
           "PSH-ACK + 20 bytes real server -> client")
    s.send("client", ctcp(s, "A", seq=1101, ack=5021, n=10, ttl=1), "client data with hop limit 1")
    s.send("client", ctcp(s, "A", seq=1101, ack=5021, n=10, ttl=2), "client data with hop limit 2")
    s.send("rs", lambda i: P.tcp(rs, c, 8080, cp, "A", seq=5021, ack=1111, n=20, ttl=1, ident=i),
           "real-server data with hop limit 1 (forwarded: IPv6 stack's hop limit check)")
    s.send("client", ctcp(s, "FA", seq=1111, ack=5041), "FIN-ACK client -> VIP")
    s.send("client", ctcp(s, "S", port=cp + 1), "SYN from a second client port (a fresh connection)")


@scenario6
def nat6_udp(s):
    "NAT66 UDP (with the checksum IPv6 requires): one datagram each way"
    rs = s.rs()
    s.svc(f"-A -u {s.ep(s.vip, 53)} -s rr")
    s.svc(f"-a -u {s.ep(s.vip, 53)} -r {s.ep(rs, 5353)} -m -w 1")
    c, cp = s.client, s.cport
    s.send("client", lambda i: P.udp(c, s.vip, cp, 53, n=21, tos=TOS, ident=i), "UDP client -> VIP:53")
    s.send("rs", lambda i: P.udp(rs, c, 5353, cp, n=31, ident=i), "UDP real server:5353 -> client")


@scenario6
def dr6_tcp(s):
    "IPv6 direct routing: SYN, data, hop limit 1 (the frame goes to the real server's MAC, IPv6 header unchanged but the hop limit)"
    rs = s.rs()
    s.svc(f"-A -t {s.ep(s.vip, 80)} -s rr")
    s.svc(f"-a -t {s.ep(s.vip, 80)} -r {s.ep(rs, 80)} -g -w 1")
    s.send("client", ctcp(s, "S"), "SYN client -> VIP:80 (DR)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, n=100), "ACK + 100 bytes")
    s.send("client", ctcp(s, "A", seq=1101, ack=5001, n=10, ttl=1), "data with hop limit 1")


@scenario6
def nat6_mtu(s):
    "NAT66 with a 1280-byte route MTU to the real server: 1280 passes, longer -> ICMPv6 packet too big 1280"
    rs = s.rs()
    s.routes.append({"dst": f"{rs}/128", "dev": "eth1", "mtu": 1280})
    s.svc(f"-A -t {s.ep(s.vip, 80)} -s rr")
    s.svc(f"-a -t {s.ep(s.vip, 80)} -r {s.ep(rs, 8080)} -m -w 1")
    s.send("client", ctcp(s, "S"), "SYN")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1280), "data packet of 1280 bytes (= route MTU)")
    s.send("client", ctcp(s, "A", seq=2221, ack=5001, total=1281), "data packet of 1281 bytes")
    s.send("client", ctcp(s, "A", seq=2221, ack=5001, total=1400), "data packet of 1400 bytes")


@scenario6
def unreach6(s):
    "New IPv6 connection to a service without a usable real server -> what the director sends (ICMPv6)"
    rs = s.rs()
    s.svc(f"-A -t {s.ep(s.vip, 80)} -s rr")
    s.svc(f"-A -t {s.ep(s.vip, 81)} -s rr")
    s.svc(f"-a -t {s.ep(s.vip, 81)} -r {s.ep(rs, 8080)} -m -w 0")
    s.svc(f"-A -u {s.ep(s.vip, 53)} -s rr")
    s.send("client", ctcp(s, "S"), "SYN to VIP:80 (service without real servers)")
    s.send("client", ctcp(s, "S", vport=81), "SYN to VIP:81 (only real server has weight 0)")
    s.send("client", lambda i: P.udp(s.client, s.vip, s.cport, 53, n=10, tos=TOS, ident=i),
           "UDP to VIP:53 (service without real servers)")
    s.send("client", lambda i: P.udp(s.client, s.vip, s.cport, 53, n=1400, tos=TOS, ident=i),
           "UDP with 1400 bytes of payload to VIP:53 (how much does the ICMPv6 error quote?)")


# ----- IPv6 and mixed-family tunnels: after every scenario above, so that those keep their indexes

def tunnel6(s, opts, note, *, hlim1=False, same_label=False):
    """One IPv6 service, one IPv6 tunnel real server: SYN, ACK + 100 bytes (and hop limit 1; and
    with same_label the next 100 bytes with the flow label of the first ACK: the GUE source port
    comes from a flow hash that covers the IPv6 flow label)."""
    rs = s.rs()
    s.svc(f"-A -t {s.ep(s.vip, 80)} -s rr")
    s.svc(f"-a -t {s.ep(s.vip, 80)} -r {s.ep(rs, 80)} -i{opts} -w 1")
    s.send("client", ctcp(s, "S"), f"SYN client -> VIP:80 ({note})")
    label = s.ident()
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, n=100), "ACK + 100 bytes")
    if same_label:
        s.send("client", lambda i: ctcp(s, "A", seq=1101, ack=5001, n=100)(label),
               f"next ACK + 100 bytes with the same flow label as the first ({label:#x})")
    if hlim1:
        s.send("client", ctcp(s, "A", seq=1101, ack=5001, n=10, ttl=1), "data with hop limit 1")


@scenario6
def tun6_ipip(s):
    "IPv6 tunnel (-i, ipip): IPv6-in-IPv6 (outer next header 41); hop limit 1 -> ICMPv6 time exceeded"
    tunnel6(s, "", "IPv6-in-IPv6", hlim1=True)


@scenario6
def tun6_gue_csum(s):
    "IPv6 GUE tunnel (port 6080) with UDP checksum, outer IPv6; the source port follows the inner flow label"
    tunnel6(s, " --tun-type gue --tun-port 6080 --tun-csum", "gue, csum", same_label=True)


@scenario6
def tun6_gue_nocsum(s):
    "IPv6 GUE tunnel (port 6080) without UDP checksum, outer IPv6 (what goes in the UDP checksum?)"
    tunnel6(s, " --tun-type gue --tun-port 6080 --tun-nocsum", "gue, nocsum", same_label=True)


@scenario6
def tun6_gre_csum(s):
    "IPv6 GRE tunnel with checksum, outer IPv6"
    tunnel6(s, " --tun-type gre --tun-csum", "gre, csum")


@scenario
def tun46_ipip(s):
    "IPv4 service, IPv6 tunnel real servers (IPv4-in-IPv6, next header 4): route MTU 1300 (tunnel MTU 1260 < 1280) and 1400 (tunnel MTU 1360)"
    rs = s.rs(0, family=6)
    rs2 = s.rs(1, family=6)
    s.routes.append({"dst": f"{rs}/128", "dev": "eth1", "mtu": 1300})
    s.routes.append({"dst": f"{rs2}/128", "dev": "eth1", "mtu": 1400})
    for vport, r in ((80, rs), (81, rs2)):
        s.svc(f"-A -t {s.vip}:{vport} -s rr")
        s.svc(f"-a -t {s.vip}:{vport} -r {s.ep(r, vport)} -i -w 1")
    for vport, mtu in ((80, 1300), (81, 1400)):
        port, tmtu, w = s.cport + vport - 80, mtu - 40, f"VIP:{vport} (route MTU {mtu}, tunnel MTU {mtu - 40})"
        s.send("client", ctcp(s, "S", port=port, vport=vport), f"SYN DF to {w}")
        s.send("client", ctcp(s, "A", port=port, vport=vport, seq=1001, ack=5001, n=100),
               f"DF ACK + 100 bytes to :{vport}")
        if vport == 81:
            s.send("client", ctcp(s, "A", port=port, vport=vport, seq=1101, ack=5001, total=tmtu),
                   f"DF data packet of {tmtu} bytes to :{vport} (= tunnel MTU)")
        s.send("client", ctcp(s, "A", port=port, vport=vport, seq=1101, ack=5001, total=tmtu + 1),
               f"DF data packet of {tmtu + 1} bytes to :{vport} (tunnel MTU + 1)")
        s.send("client", ctcp(s, "A", port=port, vport=vport, seq=1101, ack=5001, total=1500, df=False),
               f"non-DF data packet of 1500 bytes to :{vport} (outer IPv6 packet 1540 > route MTU {mtu})")


@scenario6
def tun64_ipip(s):
    "IPv6 service, IPv4 tunnel real server (IPv6-in-IPv4, outer protocol 41)"
    rs = s.rs(0, family=4)
    s.svc(f"-A -t {s.ep(s.vip, 80)} -s rr")
    s.svc(f"-a -t {s.ep(s.vip, 80)} -r {s.ep(rs, 80)} -i -w 1")
    s.send("client", ctcp(s, "S"), "SYN client -> VIP:80 (IPv6-in-IPv4)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, n=100), "ACK + 100 bytes")


@scenario6
def tun6_mtu(s):
    "IPv6-in-IPv6 with a 1400-byte route MTU to the real server (tunnel MTU 1360): longer -> ICMPv6 packet too big"
    rs = s.rs()
    s.routes.append({"dst": f"{rs}/128", "dev": "eth1", "mtu": 1400})
    s.svc(f"-A -t {s.ep(s.vip, 80)} -s rr")
    s.svc(f"-a -t {s.ep(s.vip, 80)} -r {s.ep(rs, 80)} -i -w 1")
    s.send("client", ctcp(s, "S"), "SYN")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1400), "data packet of 1400 bytes (> tunnel MTU)")
    s.send("client", ctcp(s, "A", seq=1001, ack=5001, total=1300), "data packet of 1300 bytes")
    s.send("client", ctcp(s, "A", seq=2241, ack=5001, total=1360), "data packet of 1360 bytes (= tunnel MTU)")
    s.send("client", ctcp(s, "A", seq=3541, ack=5001, total=1361), "data packet of 1361 bytes (tunnel MTU + 1)")


def frag6(whole, at, length, more, ident):
    """The piece [at, at+length) of the payload of IPv6 packet `whole` (no extension headers) as a
    fragment: the header with next header 44, then the fragment header (identification `ident`)."""
    nh, body = whole[6], whole[40:]
    piece = body[at:at + length]
    fh = struct.pack("!BBHI", nh, 0, at | (1 if more else 0), ident)
    return whole[:4] + struct.pack("!HBB", 8 + len(piece), 44, whole[7]) + whole[8:40] + fh + piece


@scenario6
def nat6_udp_frag(s):
    "NAT66 UDP datagrams arriving in fragments: reassembled, translated, fragmented again no larger than the largest fragment; a fragment larger than the route MTU -> packet too big"
    rs, rs2 = s.rs(), s.rs(1)
    s.routes.append({"dst": f"{rs2}/128", "dev": "eth1", "mtu": 1300})
    for port, r in ((53, rs), (54, rs2)):
        s.svc(f"-A -u {s.ep(s.vip, port)} -s rr")
        s.svc(f"-a -u {s.ep(s.vip, port)} -r {s.ep(r, 5353)} -m -w 1")
    c, cp = s.client, s.cport
    # 3000 bytes of UDP in fragments of 1280 bytes (1232-byte pieces), the last one first.
    whole = P.udp(c, s.vip, cp, 53, n=2992, tos=TOS, ident=0)
    ident = 0x6a000000 + s.idx
    f = [frag6(whole, 0, 1232, True, ident), frag6(whole, 1232, 1232, True, ident),
         frag6(whole, 2464, 536, False, ident)]
    s.send("client", lambda i: f[2], "last fragment (offset 2464, 536 bytes) of a 3000-byte UDP datagram to VIP:53")
    s.send("client", lambda i: f[0], "first fragment (1280 bytes, M)")
    s.send("client", lambda i: f[1], "middle fragment (offset 1232, M): the datagram is complete")
    # 2000 bytes of UDP to VIP:54 (route MTU 1300) in a 1400-byte fragment and the rest.
    whole2 = P.udp(c, s.vip, cp + 1, 54, n=1992, tos=TOS, ident=0)
    g = [frag6(whole2, 0, 1352, True, ident + 1), frag6(whole2, 1352, 648, False, ident + 1)]
    s.send("client", lambda i: g[0], "first fragment (1400 bytes, M) of a 2000-byte datagram to VIP:54 (route MTU 1300)")
    s.send("client", lambda i: g[1], "last fragment: complete, its largest fragment is over the route MTU")


def build_all():
    out = []
    for idx, fn in enumerate(SCENARIOS):
        s = Scn(idx, fn.__name__.replace("_", "-"), fn.__doc__, getattr(fn, "family", 4))
        fn(s)
        out.append(s)
    return out


if __name__ == "__main__":
    for s in build_all():
        print(f"== {s.name} [{s.idx}] vip {s.vip}: {s.desc}")
        for c in s.ipvsadm:
            print("   ipvsadm", c)
        for st in s.steps:
            print(f"   {st['from']:7} {st['note']}\n      {P.decode(st['in'])}")
