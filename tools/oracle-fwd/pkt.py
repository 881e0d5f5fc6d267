"""tools/oracle-fwd packet library: builds hand-made IPv4 packets (bytes chosen by the test,
every checksum computed here) and decodes the packets the director sent (nested: IPIP, GUE,
GRE, quoted packets of ICMP errors), with checksum verification.  No dependencies."""
import socket
import struct


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def a2b(addr):
    return socket.inet_aton(addr)


def b2a(b):
    return socket.inet_ntoa(b)


def payload(n):
    """Payload bytes 'ABC...Z' repeated (as oracle-conn's craft.py)."""
    return bytes((0x41 + k % 26) for k in range(n))


def ipv4(src, dst, proto, l4, *, tos=0, ttl=64, ident=0, df=True, mf=False, frag_off=0):
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag_off // 8)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), ident & 0xFFFF, flags, ttl, proto, 0,
                    a2b(src), a2b(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + l4


def tcp(src, dst, sport, dport, flags, *, seq=1000, ack=None, n=0, win=64240, **ipkw):
    """TCP segment (20-byte header, no options) in an IPv4 packet. flags: letters of FSRPAU."""
    fl = sum({"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32}[c] for c in flags)
    if ack is None:
        ack = 5000 if fl & 16 else 0
    data = payload(n)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, fl, win, 0, 0)
    c = csum(a2b(src) + a2b(dst) + struct.pack("!BBH", 0, 6, len(hdr) + len(data)) + hdr + data)
    return ipv4(src, dst, 6, hdr[:16] + struct.pack("!H", c) + hdr[18:] + data, **ipkw)


def udp(src, dst, sport, dport, *, n=0, csum0=False, **ipkw):
    l4 = struct.pack("!HHHH", sport, dport, 8 + n, 0) + payload(n)
    if not csum0:
        c = csum(a2b(src) + a2b(dst) + struct.pack("!BBH", 0, 17, len(l4)) + l4) or 0xFFFF
        l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
    return ipv4(src, dst, 17, l4, **ipkw)


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
    return csum(src + dst + struct.pack("!BBH", 0, proto, len(l4)) + l4) == 0


def decode(pkt, *, gue_ports=(6080,), depth=0, quoted=False):
    """One IPv4 packet -> a one-line human description with checksum checks (`!csum` marks a
    bad one; quoted packets of ICMP errors may be cut short: their L4 checksums are not checked)."""
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
            g = l4[8:12]
            hlen = (g[0] & 31) * 4
            s += f" GUE {g.hex()}"
            if hlen:
                s += f" opt {l4[12:12 + hlen].hex()}"
            return s + ind + decode(l4[12 + hlen:], gue_ports=gue_ports, depth=depth + 1, quoted=quoted)
        return s + f" data {len(l4) - 8}"
    if proto == 132 and len(l4) >= 16:
        sp, dp, vtag = struct.unpack("!HHI", l4[:8])
        crc = struct.unpack("<I", l4[8:12])[0]
        ok = quoted or crc32c(l4[:8] + b"\0\0\0\0" + l4[12:]) == crc
        return s + f" SCTP {sp} > {dp} vtag {vtag:#x} crc {crc:#010x}{'' if ok else ' !crc'} chunk {l4[12]}"
    if proto == 4:
        return s + " IPIP" + ind + decode(l4, gue_ports=gue_ports, depth=depth + 1, quoted=quoted)
    if proto == 47 and len(l4) >= 4:
        gfl, gpt = struct.unpack("!HH", l4[:4])
        hl = 4
        s += f" GRE flags {gfl:#06x} proto {gpt:#06x}"
        if gfl & 0x8000:
            hl = 8
            ok = quoted or csum(l4) == 0
            s += f" csum {l4[4:6].hex()} rsvd {l4[6:8].hex()}{'' if ok else ' !csum'}"
        return s + ind + decode(l4[hl:], gue_ports=gue_ports, depth=depth + 1, quoted=quoted)
    if proto == 1 and len(l4) >= 8:
        t, c = l4[0], l4[1]
        info = struct.unpack("!I", l4[4:8])[0]
        ok = quoted or csum(l4) == 0
        s += f" ICMP {t}/{c} info {info}{'' if ok else ' !csum'} ({len(l4) - 8} bytes quoted)"
        if t in (3, 4, 5, 11, 12) and len(l4) >= 28:
            return s + ind + "quoted: " + decode(l4[8:], gue_ports=gue_ports, depth=depth + 1, quoted=True)
        return s
    return s + f" proto {proto} ({len(l4)} bytes)"
