#!/usr/bin/env python3
"""tools/oracle-fwd host driver (runs in the client netns, started by host.sh).

For every scenario of scenarios.py: asks guest.sh to configure the director (VIP, permanent
neighbour entries, route MTUs, sysctls, ipvsadm), then sends each step's packet as an Ethernet
frame straight onto tap0 (client side) or tap1 (real-server side, a socket opened inside $NS_R)
and waits SETTLE seconds; the frames the director transmits meanwhile are taken from run.sh's
tap captures by post.py. Writes $OUT/fwd/host-steps.jsonl (one line per scenario).

IPv6 is off in the guest (the oracle's init disables it) until the first IPv6 scenario (or IPv4
scenario with an IPv6 tunnel real server): then
host.py has the guest run /tmp/fwd-ipv6-on.sh (written by guest.sh: addresses, forwarding, no
DAD / router solicitations, a few seconds for the multicast listener reports the kernel sends
when IPv6 comes up) and writes its result to $OUT/fwd/ipv6-setup.json. A run of IPv4 scenarios
only never turns IPv6 on."""
import ctypes
import json
import os
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios as S  # noqa: E402

OUT = os.environ["OUT"]
NS_R = os.environ["NS_R"]
F = f"{OUT}/fwd"
SIG = f"{OUT}/.sig"
os.makedirs(f"{F}/req", exist_ok=True)
ONLY = os.environ.get("OF_ONLY", "").split()
SETTLE = float(os.environ.get("OF_SETTLE", "0.6"))
GUEST_MAC = {"client": "52:54:00:00:00:02", "rs": "52:54:00:00:01:02"}
GUEST_DEV = {"client": "eth0", "rs": "eth1"}
RESET_SYSCTLS = {"pmtu_disc": S.PMTU_DISC_DEFAULT}


def await_sig(name, timeout):
    end = time.time() + timeout
    while not os.path.exists(f"{SIG}/{name}"):
        if time.time() > end:
            raise SystemExit(f"host: timeout waiting for {name}")
        time.sleep(0.02)


req_n = 0


def request(cmds, end=False):
    """Run shell commands in the guest, in order; returns [(cmd, rc, output)]."""
    global req_n
    req_n += 1
    body = "end\n" if end else "".join(f"cmd {c}\n" for c in cmds)
    tmp = f"{F}/req/{req_n}.tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.rename(tmp, f"{F}/req/{req_n}")
    open(f"{SIG}/req_{req_n}", "w").close()
    await_sig(f"done_{req_n}", 120)
    res, cur = [], None
    lines = open(f"{F}/resp/{req_n}").read().split("\n")
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("@cmd "):
            cur = [ln[5:], None, []]
            res.append(cur)
        elif ln.startswith("@rc "):
            cur[1] = int(ln[4:])
        elif ln == "@out":
            i += 1
            while lines[i] != "@endout":
                cur[2].append(lines[i])
                i += 1
        i += 1
    return [(c, rc, "\n".join(o).strip("\n")) for c, rc, o in res]


def packet_socket(dev, netns=None):
    """An AF_PACKET socket bound to dev, created inside netns (a /var/run/netns name) if given."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = None
    if netns:
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        if libc.setns(fd, 0x40000000) != 0:
            raise SystemExit(f"host: setns {netns} failed: {os.strerror(ctypes.get_errno())}")
        os.close(fd)
    try:
        sk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sk.bind((dev, 0))
    finally:
        if home is not None:
            if libc.setns(home, 0x40000000) != 0:
                raise SystemExit("host: setns back failed")
            os.close(home)
    return sk


def mac_bytes(m):
    return bytes(int(x, 16) for x in m.split(":"))


def setup_cmds(s):
    c = []
    for v in ([s.vip] if s.local_vip else []):
        c.append(f"iproute2-ip addr add {v}/32 dev lo" if s.family == 4 else
                 f"iproute2-ip -6 addr add {v}/128 dev lo nodad")
    for name, (side, addr, mac) in s.hosts.items():
        c.append(f"iproute2-ip neigh replace {addr} lladdr {mac} dev {GUEST_DEV[side]} nud permanent")
    for r in s.routes:
        c.append(f"iproute2-ip route add {r['dst']} dev {r['dev']}" + (f" mtu {r['mtu']}" if "mtu" in r else ""))
    for k, v in s.sysctls.items():
        c.append(f"sysctl -w net.ipv4.vs.{k}={v}")
    c += [f"ipvsadm {a}" for a in s.ipvsadm]
    return c


def info_cmds(s):
    vip = s.vip if s.family == 4 else f"[{s.vip}]"
    c = [f"ipvsadm -L -n --tun-info | grep -A8 -F '{vip}:' || true"]
    for name, (side, addr, mac) in s.hosts.items():
        c.append(f"iproute2-ip route get {addr}")
    c.append(f"iproute2-ip{' -6' if s.family == 6 else ''} neigh show nud permanent | grep -c . || true")
    return c


def teardown_cmds(s):
    c = [f"sysctl -w net.ipv4.vs.{k}={RESET_SYSCTLS[k]}" for k in s.sysctls]
    c += [f"iproute2-ip route del {r['dst']} dev {r['dev']}" for r in s.routes]
    return c


def main():
    scen = S.build_all()
    if ONLY:
        scen = [s for s in scen if s.name in ONLY]
        missing = set(ONLY) - {s.name for s in scen}
        if missing:
            raise SystemExit(f"host: unknown scenarios {sorted(missing)}")
    # neither host namespace's kernel may answer the director: every packet arriving on a tap
    # gets a blackhole route (policy rule on the input interface: dropped silently, no ICMP, no
    # ARP replies either); the frames are addressed to MACs the taps do not have anyway, and
    # post.py checks that the taps themselves never transmitted
    for pre, dev in (([], "tap0"), (["ip", "netns", "exec", NS_R], "tap1")):
        r = subprocess.run(pre + ["ip", "rule", "add", "iif", dev, "pref", "10", "blackhole"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"host: ip rule add iif {dev} blackhole failed: {r.stderr.strip()}")
    socks = {"client": packet_socket("tap0"), "rs": packet_socket("tap1", NS_R)}
    await_sig("ready", 180)
    log = open(f"{F}/host-steps.jsonl", "w")
    t_start = time.time()
    ipv6_on = False
    for s in scen:
        if s.uses_ipv6() and not ipv6_on:
            t6 = time.time()
            res = request(["sh /tmp/fwd-ipv6-on.sh"])
            with open(f"{F}/ipv6-setup.json", "w") as f:
                json.dump({"t_start": t6, "t_end": time.time(), "result": res}, f)
            if any(rc != 0 for _, rc, _ in res):
                print(f"host: IPv6 setup failed: {res}", flush=True)
            print(f"host: IPv6 on in the guest ({time.time() - t6:.1f} s)", flush=True)
            ipv6_on = True
        t_sc = time.time()
        rec = {"scenario": s.name, "index": s.idx, "family": s.family, "description": s.desc, "vip": s.vip,
               "local_vip": s.local_vip, "extra_vips": s.extra_vips,
               "hosts": {n: {"side": side, "addr": a, "mac": m} for n, (side, a, m) in s.hosts.items()},
               "sysctls": s.sysctls, "routes": s.routes, "ipvsadm": s.ipvsadm}
        rec["setup"] = request(setup_cmds(s))
        rec["info"] = request(info_cmds(s))
        bad = [x for x in rec["setup"] if x[1] != 0]
        if bad:
            print(f"host: {s.name}: setup failed: {bad}", flush=True)
        steps = []
        t_prev_end = time.time()
        for k, st in enumerate(s.steps):
            side = s.hosts[st["from"]][0]
            etype = b"\x86\xdd" if st["in"][0] >> 4 == 6 else b"\x08\x00"
            frame = mac_bytes(GUEST_MAC[side]) + mac_bytes(s.hosts[st["from"]][2]) + etype + st["in"]
            t0 = time.time()
            socks[side].send(frame)
            time.sleep(SETTLE)
            t1 = time.time()
            steps.append({"k": k, "from": st["from"], "side": side, "note": st["note"], "in": st["in"].hex(),
                          "t_prev_end": t_prev_end, "t_send": t0, "t_end": t1})
            t_prev_end = t1
        rec["steps"] = steps
        rec["teardown"] = request(teardown_cmds(s))
        rec["t_teardown_end"] = time.time()
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(f"host: scenario {s.name} ({len(steps)} packets) took {time.time() - t_sc:.1f} s", flush=True)
    # run.sh's tcpdump (no --immediate-mode) hands frames over in blocks with a timeout of up to
    # ~1 s and is stopped soon after the guest ends: give it time to write the last step's frames
    time.sleep(3)
    request([], end=True)
    print(f"host: all scenarios in {time.time() - t_start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
