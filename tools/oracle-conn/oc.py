"""Shared by host.py (drives a recording) and post.py (turns it into vectors): the scenario
language of scenarios.txt, the guest's response files, ipvsadm listings, and pcaps."""
import re
import socket
import struct

VIP_BASE = "198.18.100."          # scenario i gets VIP 198.18.100.(10 + i)
VIP_FIRST = 10

# Reset at the start of every scenario: the knobs some scenario changes, at their defaults.
RESET = [
    ("sysctl", "conn_reuse_mode", "1"),
    ("sysctl", "expire_nodest_conn", "0"),
    ("sysctl", "expire_quiescent_template", "0"),
    ("sysctl", "sloppy_tcp", "0"),
    ("sysctl", "sloppy_sctp", "0"),
    ("sysctl", "nat_icmp_send", "0"),
    ("sysctl", "amemthresh", "1024"),
    ("sysctl", "secure_tcp", "0"),
    ("sysctl", "drop_packet", "0"),
    ("sysctl", "drop_entry", "0"),
    ("sysctl", "am_droprate", "10"),
    ("ipvsadm", "--set 900 120 300"),
]

# The defense knobs every snapshot reads back (/proc/sys/net/ipv4/vs/NAME).
SNAP_SYSCTLS = ("amemthresh", "am_droprate", "drop_entry", "drop_packet", "secure_tcp")


class ScenarioError(Exception):
    pass


def addr_port(s):
    a, _, p = s.rpartition(":")
    socket.inet_aton(a)
    return a, int(p)


def client_spec(s):
    """`ADDR:PORT` or `ADDR:PORT-PORT2` (a burst, one packet per port) -> (addr, [ports])."""
    a, _, p = s.rpartition(":")
    socket.inet_aton(a)
    lo, _, hi = p.partition("-")
    ports = list(range(int(lo), int(hi or lo) + 1))
    if not ports or len(ports) > 256:
        raise ScenarioError(f"bad port range in {s!r}")
    return a, ports


def seg_reps(seg):
    """`SEG*N` (N copies of SEG per port) -> (SEG, N)."""
    base, _, n = seg.partition("*")
    return base, int(n or 1)


def seg_proto(seg):
    if seg.startswith("sctp-"):
        return "sctp"
    if seg.startswith("udp"):
        return "udp"
    if not re.fullmatch(r"[SFRPAU]+(\+\d+)?", seg):
        raise ScenarioError(f"bad segment {seg!r}")
    return "tcp"


def parse_scenarios(path):
    """-> list of dicts {name, vip, desc, count_classes, steps:[...]}; each step a dict with `kind`
    (ipvsadm, sysctl, packet, wait) and `line` (as written, $V expanded). A client packet line
    may be a burst (`c ADDR:P1-P2 SEG[*N]`: N packets per port, ports P1..P2, one step per
    packet in the vectors, one snapshot after the last)."""
    scen = []
    cur = None
    for lno, raw in enumerate(open(path), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        where = f"{path}:{lno}"
        if word == "scenario":
            vip = VIP_BASE + str(VIP_FIRST + len(scen))
            cur = {"name": rest, "vip": vip, "desc": [], "steps": [], "default_port": None,
                   "count_classes": []}
            scen.append(cur)
            continue
        if cur is None:
            raise ScenarioError(f"{where}: `{word}` before any scenario")
        rest = rest.replace("$V", cur["vip"])
        line_x = f"{word} {rest}"
        if word == "desc":
            cur["desc"].append(rest)
        elif word == "count":
            # count ADDR [idle=S]: the entries of client ADDR are evicted at random by drop_entry
            # (every scan that looks at them, once drop_entry is on and they are idle >= S s):
            # the replay compares them as counts (statistically) once eviction can have begun
            parts = rest.split()
            socket.inet_aton(parts[0])
            cls = {"client": parts[0], "idle": 0.0}
            for kv in parts[1:]:
                k, _, v = kv.partition("=")
                if k != "idle":
                    raise ScenarioError(f"{where}: count ADDR [idle=SECONDS]")
                cls["idle"] = float(v)
            cur["count_classes"].append(cls)
        elif word == "ipvsadm":
            if cur["default_port"] is None and re.search(r"(^|\s)-A\s", " " + rest):
                m = re.search(r"(-t|-u|--sctp-service)\s+(\S+)", rest)
                if not m:
                    raise ScenarioError(f"{where}: -A without a service")
                cur["default_port"] = addr_port(m.group(2))[1]
            cur["steps"].append({"kind": "ipvsadm", "args": rest, "line": line_x})
        elif word == "sysctl":
            parts = rest.split()
            if len(parts) != 2:
                raise ScenarioError(f"{where}: sysctl NAME VALUE")
            cur["steps"].append({"kind": "sysctl", "name": parts[0], "value": parts[1], "line": line_x})
        elif word == "wait":
            cur["steps"].append({"kind": "wait", "seconds": float(rest), "line": line_x})
        elif word in ("c", "s"):
            parts = rest.split()
            vport = None
            if parts and parts[-1].startswith(":"):
                vport = int(parts.pop()[1:])
            if vport is None:
                vport = cur["default_port"]
            if vport is None:
                raise ScenarioError(f"{where}: packet before the service exists")
            if word == "c":
                if len(parts) != 2:
                    raise ScenarioError(f"{where}: c SRC:SPORT[-SPORT2] SEG[*N] [:VPORT]")
                ca, ports = client_spec(parts[0])
                seg, reps = seg_reps(parts[1])
                client = (ca, ports[0])
                st = {"kind": "packet", "from": "client", "client": client, "seg": seg}
                if len(ports) > 1 or reps > 1:
                    if seg_proto(seg) == "tcp" and reps > 1:
                        # craft.py advances the sequence number within a flow; the replay
                        # rebuilds every segment with seq 1000
                        raise ScenarioError(f"{where}: TCP bursts take one segment per port")
                    st["burst"] = {"ports": ports, "reps": reps}
            else:
                if len(parts) != 3:
                    raise ScenarioError(f"{where}: s RS:PORT|@ CLIENT:PORT SEG [:VPORT]")
                rs = None if parts[0] == "@" else addr_port(parts[0])
                client = addr_port(parts[1])
                seg = parts[2]
                st = {"kind": "packet", "from": "server", "rs": rs, "client": client, "seg": seg}
            st["proto"] = seg_proto(seg)
            st["vip"] = (cur["vip"], vport)
            st["line"] = line_x
            cur["steps"].append(st)
        else:
            raise ScenarioError(f"{where}: unknown statement {word!r}")
    names = [s["name"] for s in scen]
    if len(set(names)) != len(names):
        raise ScenarioError("duplicate scenario names")
    return scen


# ----- guest responses ------------------------------------------------------------------------

def parse_response(text):
    """A guest response file -> {"cmds": [{cmd,t0,t1,rc,out}], "snap": {...} or None}."""
    cmds, snap = [], None
    lines = text.split("\n")
    i = 0
    section = None
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("@cmd "):
            cmds.append({"cmd": ln[5:]})
        elif ln.startswith("@t0 "):
            cmds[-1]["t0"] = float(ln[4:])
        elif ln.startswith("@t1 "):
            cmds[-1]["t1"] = float(ln[4:])
        elif ln.startswith("@rc "):
            cmds[-1]["rc"] = int(ln[4:])
        elif ln == "@out":
            out = []
            i += 1
            while lines[i] != "@endout":
                out.append(lines[i])
                i += 1
            cmds[-1]["out"] = "\n".join(out).strip("\n")
        elif ln.startswith("@ts"):
            snap = snap or {"raw": {}}
            k, v = ln.split(" ", 1)
            snap[k[1:]] = float(v)
            section = None
        elif ln in ("@lcn", "@pc", "@st", "@snmp", "@mem", "@vs"):
            snap = snap or {"raw": {}}
            section = ln[1:]
            snap["raw"][section] = []
        elif section is not None:
            snap["raw"][section].append(ln)
        i += 1
    if snap is not None:
        for k in ("ts0", "ts1", "ts2"):
            if k not in snap:
                raise ValueError(f"snapshot without {k}")
        snap["conns"] = parse_lcn(snap["raw"]["lcn"])
        snap["persist"] = parse_service_listing(snap["raw"]["pc"], ("weight", "persist", "active", "inact"))
        snap["stats"] = parse_service_listing(snap["raw"]["st"],
                                              ("conns", "inpkts", "outpkts", "inbytes", "outbytes"))
        snap["snmp"] = parse_snmp(snap["raw"]["snmp"])
        # /proc/meminfo MemFree and Buffers (kB) and the defense knobs, when the guest read them
        mem = {}
        for ln in snap["raw"].get("mem", []):
            k, _, v = ln.partition(":")
            if v.strip().endswith("kB"):
                mem[k.strip()] = int(v.split()[0])
        snap["meminfo_kb"] = mem
        snap["sysctls"] = {}
        for ln in snap["raw"].get("vs", []):
            k, _, v = ln.partition(":")
            if k in SNAP_SYSCTLS:
                snap["sysctls"][k] = v.strip()
    return {"cmds": cmds, "snap": snap}


def parse_expire(s):
    neg = s.startswith("-")
    m, _, sec = s.lstrip("-").partition(":")
    v = int(m) * 60 + int(sec)
    return -v if neg else v


def parse_lcn(lines):
    """`ipvsadm -Lcn` -> [{protocol, expire, state, client, virtual, dest}]."""
    out = []
    for ln in lines:
        f = ln.split()
        if len(f) < 6 or f[0] in ("IPVS", "pro"):
            continue
        out.append({"protocol": f[0], "expire": parse_expire(f[1]), "state": f[2],
                    "client": f[3], "virtual": f[4], "dest": f[5]})
    return out


def parse_service_listing(lines, cols):
    """`ipvsadm -L -n --persistent-conn` or `--stats --exact` -> {service: {"svc": [...], dest: {...}}}
    keyed by "PROTO ADDR:PORT"; dest rows as dicts of `cols`."""
    out = {}
    cur = None
    for ln in lines:
        f = ln.split()
        if not f or f[0] in ("IP", "Prot") or (f[0] == "->" and f[1] == "RemoteAddress:Port"):
            continue
        if f[0] in ("TCP", "UDP", "SCTP", "FWM"):
            cur = f"{f[0]} {f[1]}"
            out[cur] = {"line": ln.strip(), "dests": {}}
            if cols[0] == "conns":
                out[cur]["totals"] = dict(zip(cols, map(int, f[2:2 + len(cols)])))
        elif f[0] == "->" and cur is not None:
            vals = f[2:]
            if cols[0] == "weight":
                # -L -n --persistent-conn has no Forward column
                out[cur]["dests"][f[1]] = dict(zip(cols, map(int, vals[:4])))
            else:
                out[cur]["dests"][f[1]] = dict(zip(cols, map(int, vals[:len(cols)])))
    return out


def parse_snmp(lines):
    """/proc/net/snmp -> {"Ip": {"InDelivers": n, ...}, ...}"""
    out, hdr = {}, {}
    for ln in lines:
        if ":" not in ln:
            continue
        k, _, rest = ln.partition(":")
        vals = rest.split()
        if k not in hdr:
            hdr[k] = vals
        else:
            out[k] = {n: int(v) for n, v in zip(hdr[k], vals)}
    return out


# ----- pcaps ------------------------------------------------------------------------------------

def pcap_frames(path):
    """Classic pcap with Ethernet framing -> list of dicts (IPv4 only)."""
    frames = []
    with open(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            return frames
        magic = struct.unpack("<I", hdr[:4])[0]
        end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            sec, frac, incl, _orig = struct.unpack(end + "IIII", h)
            data = f.read(incl)
            ts = sec + frac / (1e9 if nano else 1e6)
            if len(data) < 34:
                continue
            smac = data[6:12].hex(":")
            etype = struct.unpack(">H", data[12:14])[0]
            if etype != 0x0800:
                continue
            fr = parse_ipv4(data[14:])
            if fr is None:
                continue
            fr["ts"] = ts
            fr["smac"] = smac
            fr["dmac"] = data[0:6].hex(":")
            frames.append(fr)
    return frames


def parse_ipv4(ip):
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    ihl = (ip[0] & 15) * 4
    tot, ident = struct.unpack(">HH", ip[2:6])
    proto = ip[9]
    fr = {"id": ident, "proto": proto, "src": socket.inet_ntoa(ip[12:16]),
          "dst": socket.inet_ntoa(ip[16:20]), "len": tot}
    l4 = ip[ihl:tot]
    fr["sport"] = fr["dport"] = 0
    if proto in (6, 17, 132) and len(l4) >= 4:
        fr["sport"], fr["dport"] = struct.unpack(">HH", l4[:4])
    if proto == 6 and len(l4) >= 14:
        fr["tcp_flags"] = l4[13]
    if proto == 132 and len(l4) >= 13:
        fr["sctp_chunk"] = l4[12]
    if proto == 1 and len(l4) >= 8:
        fr["icmp_type"], fr["icmp_code"] = l4[0], l4[1]
        # the quoted packet is cut short: parse_ipv4 reads what is there
        fr["icmp_inner"] = parse_ipv4(l4[8:]) if len(l4) >= 28 else None
    return fr


TCP_FLAG_LETTERS = [(0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U")]


def tcp_flags_str(v):
    return "".join(ch for bit, ch in TCP_FLAG_LETTERS if v & bit)
