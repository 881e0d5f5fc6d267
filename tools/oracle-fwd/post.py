#!/usr/bin/env python3
"""post.py RUN_DIR OUT_DIR [--kernel-package "PKG VERSION"] [--command CMD]

Turns one recording (RUN_DIR = run.sh's output folder: fwd/host-steps.jsonl, fwd/guest-info.txt,
tap0.pcap and tap1.pcap captured on the host side of the links) into one JSON file per scenario
in OUT_DIR (format "lvs-oracle-fwd/1", see README.md) plus summary.txt (show.py's rendering) and
warnings.txt. A step's outputs are the IPv4/IPv6 frames the director (source MAC = a guest NIC)
transmitted between the step's send and the end of its settle time. Exits 3 if there are
warnings (a guest frame outside every step window, a late frame, an input frame not seen on the
wire as sent, a failed setup command). IPv6 neighbour discovery / multicast listener frames to
a multicast address outside every step window (what IPv6 coming up in the guest sends) are not
warnings: they are listed in ignored.txt. Inside a step window every frame is kept (and such a
frame is a warning)."""
import argparse
import datetime
import json
import os
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pkt as P  # noqa: E402
import show  # noqa: E402

GUEST = {"52:54:00:00:00:02": "client", "52:54:00:00:01:02": "rs"}
TAP_MACS = {"52:54:00:00:c0:01", "52:54:00:00:c1:01"}   # run.sh's tap0/tap1 in the host netns
GUE_PORTS = (6080,)


def pcap_frames(path, side):
    frames = []
    with open(path, "rb") as f:
        hdr = f.read(24)
        magic = struct.unpack("<I", hdr[:4])[0]
        end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            sec, frac, incl, orig = struct.unpack(end + "IIII", h)
            data = f.read(incl)
            if incl != orig:
                raise SystemExit(f"post: {path}: a frame was cut short by the capture ({incl} < {orig})")
            frames.append({"ts": sec + frac / (1e9 if nano else 1e6), "side": side,
                           "dmac": data[0:6].hex(":"), "smac": data[6:12].hex(":"),
                           "etype": struct.unpack(">H", data[12:14])[0], "data": data[14:]})
    return frames


def ip_trim(ip):
    if ip[0] >> 4 == 6:
        return ip[:40 + struct.unpack("!H", ip[4:6])[0]]
    tot = struct.unpack("!H", ip[2:4])[0]
    return ip[:tot]


NDP_MLD = {130, 131, 132, 133, 134, 135, 136, 137, 143}


def is_ndp_mld(x):
    """An IPv6 frame to a multicast address carrying ICMPv6 neighbour discovery or MLD (directly or
    after a hop-by-hop header, as MLD reports have)."""
    ip = x["data"]
    if x["etype"] != 0x86DD or len(ip) < 48 or ip[24] != 0xFF:
        return False
    nh, rest = ip[6], ip[40:]
    if nh == 0 and len(rest) >= 8:
        nh, rest = rest[0], rest[(rest[1] + 1) * 8:]
    return nh == 58 and len(rest) >= 1 and rest[0] in NDP_MLD


def ids_in(pkt):
    """IP IDs of a packet and of every packet quoted/encapsulated in it (best effort)."""
    out = set()
    while len(pkt) >= 20 and pkt[0] >> 4 == 4:
        out.add(struct.unpack("!H", pkt[4:6])[0])
        ihl = (pkt[0] & 15) * 4
        proto = pkt[9]
        l4 = pkt[ihl:]
        if proto == 1 and len(l4) >= 28:
            pkt = l4[8:]
        elif proto == 4:
            pkt = l4
        elif proto == 47 and len(l4) >= 4:
            pkt = l4[8:] if l4[0] & 0x80 else l4[4:]
        elif proto == 17 and len(l4) >= 12 and struct.unpack("!H", l4[2:4])[0] in GUE_PORTS:
            pkt = l4[12 + (l4[8] & 31) * 4:]
        else:
            break
    return out


def flows_in(pkt):
    """IPv6 flow labels of a packet and of every IPv6 packet quoted in its ICMPv6 errors."""
    out = set()
    while len(pkt) >= 40 and pkt[0] >> 4 == 6:
        out.add(struct.unpack("!I", pkt[0:4])[0] & 0xFFFFF)
        if pkt[6] == 58 and len(pkt) >= 88 and pkt[40] < 128:
            pkt = pkt[48:]
        else:
            break
    return out


def is_gue(pkt):
    """An IPv4 or IPv6 packet (no extension headers) carrying UDP to a GUE port."""
    if len(pkt) >= 44 and pkt[0] >> 4 == 6:
        return pkt[6] == 17 and struct.unpack("!H", pkt[42:44])[0] in GUE_PORTS
    return len(pkt) >= 24 and pkt[9] == 17 and struct.unpack("!H", pkt[22:24])[0] in GUE_PORTS


def gue_sport(v, out, off, inp):
    """The GUE source port (and the UDP checksum covering it) of an outer UDP header at `off`."""
    if len(out) >= off + 8 and struct.unpack("!H", out[off + 2:off + 4])[0] in GUE_PORTS and not is_gue(inp):
        v.append({"field": "udp.sport", "off": off, "len": 2, "why": "GUE source port from the flow hash"})
        if struct.unpack("!H", out[off + 6:off + 8])[0] != 0:
            v.append({"field": "udp.csum", "off": off + 6, "len": 2, "why": "covers udp.sport"})


def vary_fields6(out, inp):
    """IPv6: the flow label of packets the director originates with an automatic label (its ICMPv6
    errors; tunnel packets carry label 0), the identification of a fragment header, the GUE
    source port (see README.md)."""
    v = []
    flow = struct.unpack("!I", out[0:4])[0] & 0xFFFFF
    icmp_err = out[6] == 58 and len(out) > 40 and out[40] < 128
    if icmp_err or (flow != 0 and flow not in flows_in(inp)):
        v.append({"field": "ip6.flow", "off": 1, "len": 3,
                  "why": "flow label from the flow hash (seeded at boot); the high nibble of byte 1 is traffic class"})
    nh, off, first = out[6], 40, True
    if nh == 44 and len(out) >= 48:
        v.append({"field": "ip6.frag.id", "off": 44, "len": 4,
                  "why": "fragment identification from ipv6_select_ident (keyed at boot)"})
        nh, off, first = out[40], 48, struct.unpack("!H", out[42:44])[0] & 0xFFF8 == 0
    if first and nh == 17:
        gue_sport(v, out, off, inp)
    return v


def vary_fields(out, inp):
    """Byte ranges of an output packet that the kernel fills unpredictably (see README.md)."""
    if out[0] >> 4 == 6:
        return vary_fields6(out, inp)
    v = []
    fo = struct.unpack("!H", out[6:8])[0]
    ident = struct.unpack("!H", out[4:6])[0]
    if not fo & 0x4000 and ident not in ids_in(inp):
        v.append({"field": "ip.id", "off": 4, "len": 2})
        v.append({"field": "ip.csum", "off": 10, "len": 2, "why": "covers ip.id"})
    ihl = (out[0] & 15) * 4
    l4 = out[ihl:]
    first = (fo & 0x1FFF) == 0
    if first and out[9] == 17 and len(l4) >= 8:
        gue_sport(v, out, ihl, inp)
    return v


def parse_info(path):
    info, section = {"sysctl": {}}, None
    for ln in open(path).read().split("\n"):
        if ln.startswith("@"):
            section = ln[1:]
            info[section] = []
        elif section:
            info[section].append(ln)
        elif ln.startswith("sysctl "):
            k, _, v = ln[7:].partition("=")
            info["sysctl"][k] = v.strip()
        elif "=" in ln:
            k, _, v = ln.partition("=")
            info[k] = v.strip()
    return info


def fmt(obj, ind=0):
    """JSON with one space of indentation; short objects and lists of scalars on one line."""
    flat = json.dumps(obj)
    if not isinstance(obj, (dict, list)) or len(flat) + ind < 110 or \
            (isinstance(obj, list) and all(not isinstance(x, (dict, list)) for x in obj)):
        return flat
    pad = " " * (ind + 1)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k)}: {fmt(v, ind + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * ind + "}"
    items = [pad + fmt(x, ind + 1) for x in obj]
    return "[\n" + ",\n".join(items) + "\n" + " " * ind + "]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("out")
    ap.add_argument("--kernel-package", default="")
    ap.add_argument("--command", default="tools/oracle-fwd/record.sh")
    a = ap.parse_args()
    info = parse_info(f"{a.run}/fwd/guest-info.txt")
    frames = sorted(pcap_frames(f"{a.run}/tap0.pcap", "client") + pcap_frames(f"{a.run}/tap1.pcap", "rs"),
                    key=lambda x: x["ts"])
    guest_frames = [x for x in frames if x["smac"] in GUEST]
    for x in guest_frames:
        if GUEST[x["smac"]] != x["side"]:
            raise SystemExit(f"post: frame from {x['smac']} on the {x['side']} tap?")
    used = set()
    warnings = []
    recs = [json.loads(ln) for ln in open(f"{a.run}/fwd/host-steps.jsonl")]
    info6 = parse_info(f"{a.run}/fwd/guest-info6.txt") if os.path.exists(f"{a.run}/fwd/guest-info6.txt") else None
    if os.path.exists(f"{a.run}/fwd/ipv6-setup.json"):
        for c, rc, out in json.load(open(f"{a.run}/fwd/ipv6-setup.json"))["result"]:
            if rc != 0:
                warnings.append(f"IPv6 setup: guest command failed (rc {rc}): {c}: {out}")
    director, director6 = {}, {}
    for side, dev in (("client_if", "eth0"), ("rs_if", "eth1")):
        addr, _, plen = info[f"addr_{dev}"].split()[0].partition("/")
        director[side] = {"dev": dev, "addr": addr, "prefix": int(plen), "mtu": int(info[f"mtu_{dev}"]),
                          "mac": info[f"mac_{dev}"]}
        if info6 and info6.get(f"addr6_{dev}"):
            addr, _, plen = info6[f"addr6_{dev}"].split()[0].partition("/")
            director6[side] = {"dev": dev, "addr": addr, "prefix": int(plen), "mtu": int(info6[f"mtu6_{dev}"]),
                               "mac": info[f"mac_{dev}"]}
    os.makedirs(a.out, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    docs = []
    for rec in recs:
        name = rec["scenario"]
        family = rec.get("family", 4)
        # mixed-family tunnel scenarios: real servers of the other family than the service
        rs_fams = {6 if ":" in h["addr"] else 4 for h in rec["hosts"].values() if h["side"] == "rs"}
        rs_family = (rs_fams - {family}).pop() if rs_fams - {family} else None
        if 6 in (family, rs_family) and len(director6) != 2:
            raise SystemExit(f"post: {name} is an IPv6 scenario but fwd/guest-info6.txt has no IPv6 addresses")
        for c, rc, out in rec["setup"] + rec["teardown"]:
            if rc != 0:
                warnings.append(f"{name}: guest command failed (rc {rc}): {c}: {out}")
        steps = []
        for st in rec["steps"]:
            inp = bytes.fromhex(st["in"])
            lo, hi = st["t_send"], st["t_end"]
            host = rec["hosts"][st["from"]]
            seen = [x for x in frames if lo - 0.001 <= x["ts"] <= hi and x["smac"] == host["mac"]]
            if len(seen) != 1 or ip_trim(seen[0]["data"]) != inp or seen[0]["side"] != host["side"]:
                warnings.append(f"{name} step {st['k']}: input frame not seen on the wire exactly once as sent "
                                f"({len(seen)} seen)")
            outs = []
            for i, x in enumerate(guest_frames):
                if lo <= x["ts"] <= hi:
                    used.add(i)
                    if x["etype"] not in (0x0800, 0x86DD):
                        warnings.append(f"{name} step {st['k']}: non-IP frame from the director "
                                        f"(ethertype {x['etype']:#06x})")
                        continue
                    if is_ndp_mld(x):
                        warnings.append(f"{name} step {st['k']}: IPv6 neighbour discovery / MLD frame in the "
                                        f"step window (kept): {P.decode(ip_trim(x['data']))}")
                    ip = ip_trim(x["data"])
                    o = {"if": x["side"], "eth_dst": x["dmac"], "hex": ip.hex()}
                    v = vary_fields(ip, inp)
                    if v:
                        o["vary"] = v
                    o["dt_ms"] = round((x["ts"] - lo) * 1000, 1)
                    if x["ts"] - lo > 0.7 * (hi - lo):
                        warnings.append(f"{name} step {st['k']}: late output frame ({o['dt_ms']} ms)")
                    outs.append(o)
            step = {"from": host["side"]}
            if st["from"] != host["side"]:
                step["host"] = st["from"]
            step.update({"note": st["note"], "in": st["in"], "out": outs})
            steps.append(step)
        hosts = rec["hosts"]
        doc = {
            "format": "lvs-oracle-fwd/1",
            "kernel": info["kernel"],
            "kernel_package": a.kernel_package,
            "recorded_at": now,
            "command": a.command,
            "scenario": name,
            **({"family": 6} if family == 6 else {}),
            "description": rec["description"],
            "vip": rec["vip"],
            "vip_local": rec["local_vip"],
        }
        if rec["extra_vips"]:
            doc["nonlocal_vips"] = rec["extra_vips"]
        doc.update({
            "sysctls": {k: int(v) for k, v in rec["sysctls"].items()},
            "director": director6 if family == 6 else director,
        })
        if rs_family:
            doc["rs_family"] = rs_family
            doc[f"director{rs_family}"] = director6 if rs_family == 6 else director
        doc.update({
            "routes": rec["routes"],
            "macs": {n: h["mac"] for n, h in hosts.items()},
            "addrs": {n: h["addr"] for n, h in hosts.items()},
            "ipvsadm": rec["ipvsadm"],
            "steps": steps,
        })
        docs.append(doc)
        with open(f"{a.out}/{name}.json", "w") as f:
            f.write(fmt(doc) + "\n")
    for x in frames:
        if x["smac"] in TAP_MACS:
            warnings.append(f"the host's own {x['side']} tap transmitted at {x['ts']:.3f} (ethertype "
                            f"{x['etype']:#06x}): a host namespace answered")
    ignored = []
    for i, x in enumerate(guest_frames):
        if i not in used:
            d = P.decode(ip_trim(x["data"])) if x["etype"] in (0x0800, 0x86DD) else f"ethertype {x['etype']:#06x}"
            line = f"director frame outside every step window at {x['ts']:.3f} on {x['side']}: {d}"
            (ignored if is_ndp_mld(x) else warnings).append(line)
    guest = {"kernel": info["kernel"], "ipvsadm": info.get("ipvsadm"), "sysctls": info["sysctl"],
             "routes": info.get("routes", []), "modules": " ".join(info.get("lsmod", [])).split()}
    if info6:
        guest["ipv6"] = {"addrs": {d: info6.get(f"addr6_{d}", "").split() + info6.get(f"linklocal6_{d}", "").split()
                                   for d in ("eth0", "eth1")},
                         "sysctls": info6["sysctl"], "routes": [r for r in info6.get("routes", []) if r]}
    with open(f"{a.out}/guest-info.json", "w") as f:
        f.write(fmt(guest) + "\n")
    with open(f"{a.out}/summary.txt", "w") as f:
        for d in docs:
            f.write(show.render(d))
    with open(f"{a.out}/warnings.txt", "w") as f:
        f.write("".join(w + "\n" for w in warnings))
    if ignored:
        with open(f"{a.out}/ignored.txt", "w") as f:
            f.write("".join(w + "\n" for w in ignored))
    for w in warnings:
        print("WARNING " + w, file=sys.stderr)
    print(f"post: {len(docs)} scenarios, {sum(len(d['steps']) for d in docs)} steps, "
          f"{len(warnings)} warnings{f', {len(ignored)} IPv6 NDP/MLD frames ignored' if ignored else ''} -> {a.out}",
          file=sys.stderr)
    sys.exit(3 if warnings else 0)


if __name__ == "__main__":
    main()
