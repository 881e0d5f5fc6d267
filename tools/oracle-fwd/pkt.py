"""tools/oracle-fwd packet library: builds hand-made IPv4 and IPv6 packets (bytes chosen by the
test, every checksum computed here) and decodes the packets the director sent (nested: IPIP,
GUE, GRE over IPv4 or IPv6 (IPv4-in-IPv6, IPv6-in-IPv4 too), IPv6 fragment headers, quoted
packets of ICMP and ICMPv6 errors), with checksum verification.  No dependencies.

The builders tcp(), udp() pick the family from the addresses (a ':' means IPv6). For IPv6 the
IPv4 keywords map as: tos -> traffic class, ttl -> hop limit, ident -> flow label (20 bits);
df is ignored (IPv6 has no DF: routers never fragment)."""
import socket
import struct


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def is6(addr):
    return ":" in addr


def a2b(addr):
    return socket.inet_pton(socket.AF_INET6, addr) if is6(addr) else socket.inet_aton(addr)


def b2a(b):
    return socket.inet_ntop(socket.AF_INET6, b) if len(b) == 16 else socket.inet_ntoa(b)


def pseudo(src, dst, proto, length):
    """The pseudo-header of the TCP/UDP/ICMPv6 checksum: IPv4 (RFC 793) or IPv6 (RFC 8200 8.1)."""
    if is6(src):
        return a2b(src) + a2b(dst) + struct.pack("!IxxxB", length, proto)
    return a2b(src) + a2b(dst) + struct.pack("!BBH", 0, proto, length)


def payload(n):
    """Payload bytes 'ABC...Z' repeated (as oracle-conn's craft.py)."""
    return bytes((0x41 + k % 26) for k in range(n))


def ipv4(src, dst, proto, l4, *, tos=0, ttl=64, ident=0, df=True, mf=False, frag_off=0):
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag_off // 8)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), ident & 0xFFFF, flags, ttl, proto, 0,
                    a2b(src), a2b(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + l4


def ipv6(src, dst, nh, l4, *, tc=0, hlim=64, flow=0):
    """IPv6 header (no extension headers) + payload; flow = the 20-bit flow label."""
    return struct.pack("!IHBB16s16s", (6 << 28) | ((tc & 0xFF) << 20) | (flow & 0xFFFFF), len(l4), nh, hlim,
                       a2b(src), a2b(dst)) + l4


def ip(src, dst, proto, l4, *, tos=0, ttl=64, ident=0, df=True, **kw):
    """An IPv4 or IPv6 packet (by the address family) with the IPv4 keyword names."""
    if is6(src):
        return ipv6(src, dst, proto, l4, tc=tos, hlim=ttl, flow=ident)
    return ipv4(src, dst, proto, l4, tos=tos, ttl=ttl, ident=ident, df=df, **kw)


def tcp(src, dst, sport, dport, flags, *, seq=1000, ack=None, n=0, win=64240, **ipkw):
    """TCP segment (20-byte header, no options) in an IPv4 or IPv6 packet. flags: letters of FSRPAU."""
    fl = sum({"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32}[c] for c in flags)
    if ack is None:
        ack = 5000 if fl & 16 else 0
    data = payload(n)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, fl, win, 0, 0)
    c = csum(pseudo(src, dst, 6, len(hdr) + len(data)) + hdr + data)
    return ip(src, dst, 6, hdr[:16] + struct.pack("!H", c) + hdr[18:] + data, **ipkw)


def udp(src, dst, sport, dport, *, n=0, csum0=False, **ipkw):
    """UDP datagram in an IPv4 or IPv6 packet (csum0: checksum field 0, invalid for IPv6)."""
    l4 = struct.pack("!HHHH", sport, dport, 8 + n, 0) + payload(n)
    if not csum0:
        c = csum(pseudo(src, dst, 17, len(l4)) + l4) or 0xFFFF
        l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
    return ip(src, dst, 17, l4, **ipkw)


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def sctp(src, dst, sport, dport, *, chunk="init", bad_crc=False, **ipkw):
    """SCTP packet with one chunk (INIT: vtag 0; DATA: vtag 0x55667788), CRC32c set
    (or deliberately wrong with bad_crc)."""
    if chunk == "init":
        ctype, val, vtag = 1, struct.pack("!IIHHI", 0x11223344, 65536, 1, 1, 1000), 0
    else:
        ctype, val, vtag = 0, struct.pack("!IHHI", 1000, 0, 0, 0) + b"DATA", 0x55667788
    ch = struct.pack("!BBH", ctype, 3 if ctype == 0 else 0, 4 + len(val)) + val
    ch += b"\0" * ((-len(ch)) % 4)
    l4 = struct.pack("!HHII", sport, dport, vtag, 0) + ch
    c = crc32c(l4) ^ (0x0F0F0F0F if bad_crc else 0)
    l4 = l4[:8] + struct.pack("<I", c) + l4[12:]
    return ipv4(src, dst, 132, l4, **ipkw)


def icmp_err(src, dst, typ, code, quoted, *, info=0, **ipkw):
    """ICMP error (type/code, 4-byte info field, e.g. the next-hop MTU for 3/4) quoting `quoted`."""
    body = struct.pack("!BBHI", typ, code, 0, info) + quoted
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    return ipv4(src, dst, 1, body, **ipkw)


def icmp6_err(src, dst, typ, code, quoted, *, info=0, **ipkw):
    """ICMPv6 error (1 unreachable, 2 packet too big with info = MTU, 3 time exceeded, 4 parameter
    problem) quoting `quoted`; checksum over the IPv6 pseudo-header."""
    body = struct.pack("!BBHI", typ, code, 0, info) + quoted
    body = body[:2] + struct.pack("!H", csum(pseudo(src, dst, 58, len(body)) + body)) + body[4:]
    return ipv6(src, dst, 58, body, tc=ipkw.get("tos", 0), hlim=ipkw.get("ttl", 64), flow=ipkw.get("ident", 0))


def icmp_fragneeded(src, dst, quoted, mtu, **ipkw):
    return icmp_err(src, dst, 3, 4, quoted, info=mtu & 0xFFFF, **ipkw)


def with_ttl(pkt, ttl):
    """The same IPv4 packet with another TTL (header checksum recomputed), e.g. a packet as the
    next hop saw it after the director's decrement."""
    h = bytearray(pkt[:20])
    h[8] = ttl
    h[10:12] = b"\0\0"
    h[10:12] = struct.pack("!H", csum(bytes(h)))
    return bytes(h) + pkt[20:]


def gue_outer(src, dst, sport, tun_port, inner, *, ttl=63, tos=0, ident=0, df=True):
    """An outer GUE packet (UDP checksum 0, GUE header version 0, proto 4) around `inner`."""
    l4 = struct.pack("!HHHH", sport, tun_port, 8 + 4 + len(inner), 0) + bytes([0, 4, 0, 0]) + inner
    return ipv4(src, dst, 17, l4, tos=tos, ttl=ttl, ident=ident, df=df)


# ----- decoding -------------------------------------------------------------------------------

TCPF = [(0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"), (0x40, "E"), (0x80, "C")]


def flags_str(v):
    return "".join(ch for bit, ch in TCPF if v & bit)


def l4_csum_ok(src, dst, proto, l4):
    """src, dst: 4 or 16 address bytes."""
    if len(src) == 16:
        return csum(src + dst + struct.pack("!IxxxB", len(l4), proto) + l4) == 0
    return csum(src + dst + struct.pack("!BBH", 0, proto, len(l4)) + l4) == 0


ICMP6 = {1: "unreach", 2: "too-big", 3: "time-exceeded", 4: "param-problem", 128: "echo-request",
         129: "echo-reply", 130: "mld-query", 131: "mld-report", 132: "mld-done", 133: "router-solicit",
         134: "router-advert", 135: "neighbor-solicit", 136: "neighbor-advert", 137: "redirect",
         143: "mldv2-report"}
EXT6 = (0, 43, 60)      # hop-by-hop, routing, destination options: skipped over by decode6


def _gue(l4, s, ind, *, gue_ports, depth, quoted):
    """The GUE header after an outer UDP header (l4 = UDP header + rest), then the inner packet."""
    g = l4[8:12]
    hlen = (g[0] & 31) * 4
    s += f" GUE {g.hex()}"
    if hlen:
        s += f" opt {l4[12:12 + hlen].hex()}"
    return s + ind + decode(l4[12 + hlen:], gue_ports=gue_ports, depth=depth + 1, quoted=quoted)


def _gre(l4, s, ind, *, gue_ports, depth, quoted):
    """A GRE header (checksum over the GRE header and payload, no pseudo-header), then the inner packet."""
    gfl, gpt = struct.unpack("!HH", l4[:4])
    hl = 4
    s += f" GRE flags {gfl:#06x} proto {gpt:#06x}"
    if gfl & 0x8000:
        hl = 8
        ok = quoted or csum(l4) == 0
        s += f" csum {l4[4:6].hex()} rsvd {l4[6:8].hex()}{'' if ok else ' !csum'}"
    return s + ind + decode(l4[hl:], gue_ports=gue_ports, depth=depth + 1, quoted=quoted)


def decode6(pkt, *, gue_ports=(6080,), depth=0, quoted=False):
    """One IPv6 packet -> a one-line description, as decode() (TCP/UDP/ICMPv6 checksums over the
    IPv6 pseudo-header; quoted packets may be cut short and are not checksum-checked)."""
    if len(pkt) < 40:
        return f"<short IPv6: {pkt.hex()}>"
    w, plen, nh, hlim = struct.unpack("!IHBB", pkt[:8])
    tc, flow = (w >> 20) & 0xFF, w & 0xFFFFF
    src, dst = pkt[8:24], pkt[24:40]
    s = f"{b2a(src)} > {b2a(dst)} tc {tc:#04x} hlim {hlim} flow {flow:#07x} plen {plen}"
    rest = pkt[40:40 + plen] if not quoted else pkt[40:]
    if not quoted and len(pkt) < 40 + plen:
        s += f" !short({len(pkt) - 40})"
    while nh in EXT6 and len(rest) >= 8:
        hl = (rest[1] + 1) * 8
        s += f" ext {nh} ({hl} bytes)"
        nh, rest = rest[0], rest[hl:]
    ind = "\n" + "    " * (depth + 1)
    if nh == 44 and len(rest) >= 8:
        nxt, fo, fid = rest[0], struct.unpack("!H", rest[2:4])[0], struct.unpack("!I", rest[4:8])[0]
        s += (f" FRAG id {fid:#x} off {fo & ~7}{' MF' if fo & 1 else ''} next {nxt} "
              f"[fragment, {len(rest) - 8} bytes]")
        if fo & ~7 == 0 and fo & 1 and nxt in (4, 41) and len(rest) >= 8 + (40 if nxt == 41 else 20):
            # first fragment of a tunnel packet: the start of the inner packet (cut short)
            s += "\n" + "    " * (depth + 1) + "starts: " + decode(rest[8:], gue_ports=gue_ports, depth=depth + 1,
                                                                  quoted=True)
        return s
    if nh == 6 and len(rest) >= 20:
        sp, dp, seq, ack, _, fl, win = struct.unpack("!HHIIBBH", rest[:16])
        ok = quoted or l4_csum_ok(src, dst, 6, rest)
        return s + (f" TCP {sp} > {dp} [{flags_str(fl)}] seq {seq} ack {ack} win {win} "
                    f"data {len(rest) - (rest[12] >> 4) * 4}{'' if ok else ' !csum'}")
    if nh == 6 and len(rest) >= 8:
        sp, dp, seq = struct.unpack("!HHI", rest[:8])
        return s + f" TCP {sp} > {dp} seq {seq} (first {len(rest)} bytes)"
    if nh == 17 and len(rest) >= 8:
        sp, dp, ulen, uc = struct.unpack("!HHHH", rest[:8])
        if uc == 0:
            ck = "csum 0"
        elif quoted:
            ck = f"csum {uc:#06x}"
        else:
            ck = f"csum {uc:#06x}" + ("" if l4_csum_ok(src, dst, 17, rest) else " !csum")
        s += f" UDP {sp} > {dp} ulen {ulen} {ck}"
        if dp in gue_ports and len(rest) >= 12:
            return _gue(rest, s, ind, gue_ports=gue_ports, depth=depth, quoted=quoted)
        return s + f" data {len(rest) - 8}"
    if nh == 47 and len(rest) >= 4:
        return _gre(rest, s, ind, gue_ports=gue_ports, depth=depth, quoted=quoted)
    if nh == 58 and len(rest) >= 4:
        t, c = rest[0], rest[1]
        ok = quoted or l4_csum_ok(src, dst, 58, rest)
        s += f" ICMPv6 {t}/{c} {ICMP6.get(t, '?')}{'' if ok else ' !csum'}"
        if t < 128 and len(rest) >= 8:
            info = struct.unpack("!I", rest[4:8])[0]
            s += f" info {info} ({len(rest) - 8} bytes quoted)"
            if len(rest) >= 48:
                return s + ind + "quoted: " + decode(rest[8:], gue_ports=gue_ports, depth=depth + 1, quoted=True)
            return s
        if t in (135, 136, 137) and len(rest) >= 24:
            s += f" target {b2a(rest[8:24])}"
        elif t in (130, 131, 132) and len(rest) >= 24:
            s += f" group {b2a(rest[8:24])}"
        elif t == 143 and len(rest) >= 8:
            n, off, groups = struct.unpack("!H", rest[6:8])[0], 8, []
            for _ in range(n):
                if len(rest) < off + 20:
                    break
                groups.append(f"{rest[off]}:{b2a(rest[off + 4:off + 20])}")
                off += 20 + 16 * struct.unpack("!H", rest[off + 2:off + 4])[0] + 4 * rest[off + 1]
            s += " records " + ",".join(groups)
        return s + f" ({len(rest)} bytes)"
    if nh in (4, 41):
        return s + f" {'IP4IN6' if nh == 4 else 'IP6IN6'}" + ind + decode(rest, gue_ports=gue_ports, depth=depth + 1,
                                                                         quoted=quoted)
    return s + f" next {nh} ({len(rest)} bytes)"


def decode(pkt, *, gue_ports=(6080,), depth=0, quoted=False):
    """One IPv4 (or IPv6: decode6) packet -> a one-line human description with checksum checks
    (`!csum` marks a bad one; quoted packets of ICMP errors may be cut short: their L4 checksums
    are not checked)."""
    if len(pkt) >= 1 and pkt[0] >> 4 == 6:
        return decode6(pkt, gue_ports=gue_ports, depth=depth, quoted=quoted)
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return f"<not IPv4: {pkt[:8].hex()}>"
    ihl = (pkt[0] & 15) * 4
    tos, tot, ident, fo, ttl, proto = pkt[1], *struct.unpack("!HHH", pkt[2:8]), pkt[8], pkt[9]
    src, dst = pkt[12:16], pkt[16:20]
    bits = []
    if fo & 0x4000:
        bits.append("DF")
    if fo & 0x2000:
        bits.append("MF")
    off = (fo & 0x1FFF) * 8
    hdr_ok = csum(pkt[:ihl]) == 0
    s = (f"{b2a(src)} > {b2a(dst)} tos {tos:#04x} ttl {ttl} id {ident:#06x}"
         f"{' ' + '+'.join(bits) if bits else ''}{f' off {off}' if off else ''} len {tot}"
         f"{'' if hdr_ok else ' !ipcsum'}")
    l4 = pkt[ihl:tot] if not quoted else pkt[ihl:]
    if off or (fo & 0x2000):
        s += f" proto {proto} [fragment, {len(l4)} bytes]"
        if not off and proto in (6, 17) and len(l4) >= 8:
            sp, dp, x, y = struct.unpack("!HHHH", l4[:8])
            s += f" {'TCP' if proto == 6 else 'UDP'} {sp} > {dp}"
            if proto == 17:
                s += f" ulen {x} csum {y:#06x}"
        return s
    ind = "\n" + "    " * (depth + 1)
    if proto == 6 and len(l4) >= 20:
        sp, dp, seq, ack, _, fl, win = struct.unpack("!HHIIBBH", l4[:16])
        ok = quoted or l4_csum_ok(src, dst, 6, l4)
        return s + (f" TCP {sp} > {dp} [{flags_str(fl)}] seq {seq} ack {ack} win {win} "
                    f"data {len(l4) - (l4[12] >> 4) * 4}{'' if ok else ' !csum'}")
    if proto == 6 and len(l4) >= 8:
        sp, dp, seq = struct.unpack("!HHI", l4[:8])
        return s + f" TCP {sp} > {dp} seq {seq} (first 8 bytes)"
    if proto == 17 and len(l4) >= 8:
        sp, dp, ulen, uc = struct.unpack("!HHHH", l4[:8])
        if uc == 0:
            ck = "csum 0"
        elif quoted:
            ck = f"csum {uc:#06x}"
        else:
            ck = f"csum {uc:#06x}" + ("" if l4_csum_ok(src, dst, 17, l4) else " !csum")
        s += f" UDP {sp} > {dp} ulen {ulen} {ck}"
        if dp in gue_ports and len(l4) >= 12:
            return _gue(l4, s, ind, gue_ports=gue_ports, depth=depth, quoted=quoted)
        return s + f" data {len(l4) - 8}"
    if proto == 132 and len(l4) >= 16:
        sp, dp, vtag = struct.unpack("!HHI", l4[:8])
        crc = struct.unpack("<I", l4[8:12])[0]
        ok = quoted or crc32c(l4[:8] + b"\0\0\0\0" + l4[12:]) == crc
        return s + f" SCTP {sp} > {dp} vtag {vtag:#x} crc {crc:#010x}{'' if ok else ' !crc'} chunk {l4[12]}"
    if proto in (4, 41):
        return s + (" IPIP" if proto == 4 else " IP6IN4") + ind + decode(l4, gue_ports=gue_ports, depth=depth + 1,
                                                                          quoted=quoted)
    if proto == 47 and len(l4) >= 4:
        return _gre(l4, s, ind, gue_ports=gue_ports, depth=depth, quoted=quoted)
    if proto == 1 and len(l4) >= 8:
        t, c = l4[0], l4[1]
        info = struct.unpack("!I", l4[4:8])[0]
        ok = quoted or csum(l4) == 0
        s += f" ICMP {t}/{c} info {info}{'' if ok else ' !csum'} ({len(l4) - 8} bytes quoted)"
        if t in (3, 4, 5, 11, 12) and len(l4) >= 28:
            return s + ind + "quoted: " + decode(l4[8:], gue_ports=gue_ports, depth=depth + 1, quoted=True)
        return s
    return s + f" proto {proto} ({len(l4)} bytes)"
