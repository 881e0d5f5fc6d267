#!/usr/bin/env python3
"""tools/oracle-conn host driver (runs in the client netns, started by host.sh).

Walks scenarios.txt step by step: client packets are sent from here (netns C, tap0), real-server
packets from netns R (tap1), each by craft.py with a unique IP identification; ipvsadm and sysctl
steps and every snapshot are requests to guest.sh. Writes $OUT/conn/host-steps.jsonl (one line
per step, in order) for post.py."""
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oc  # noqa: E402

OUT = os.environ["OUT"]
NS_R = os.environ["NS_R"]
PY = os.environ.get("PY", "/usr/bin/python3")
TOOLS = f"{OUT}/tools"
CONN = f"{OUT}/conn"
SIG = f"{OUT}/.sig"
os.makedirs(f"{CONN}/req", exist_ok=True)
ONLY = os.environ.get("OC_ONLY", "").split()


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"host: {' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


def await_sig(name, timeout):
    end = time.time() + timeout
    while not os.path.exists(f"{SIG}/{name}"):
        if time.time() > end:
            raise SystemExit(f"host: timeout waiting for {name}")
        time.sleep(0.02)


req_n = 0


def request(cmds, snap):
    """Send one request to the guest; returns its parsed response."""
    global req_n
    req_n += 1
    body = f"snap {1 if snap else 0}\n" + "".join(f"cmd {c}\n" for c in cmds)
    if cmds == ["__end__"]:
        body = "snap 0\nend\n"
    tmp = f"{CONN}/req/{req_n}.tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.rename(tmp, f"{CONN}/req/{req_n}")
    open(f"{SIG}/req_{req_n}", "w").close()
    await_sig(f"done_{req_n}", 300)
    with open(f"{CONN}/resp/{req_n}") as f:
        return req_n, oc.parse_response(f.read())


def guest_cmd(st):
    if st["kind"] == "ipvsadm":
        return f"ipvsadm {st['args']}"
    n = st["name"]
    p = f"/proc/sys/net/ipv4/vs/{n}"
    return f"sysctl -w net.ipv4.vs.{n}={st['value']}; r=$?; echo \"readback=$(cat {p})\"; exit $r"


def main():
    scen = oc.parse_scenarios(f"{TOOLS}/scenarios.txt")
    if ONLY:
        scen = [s for s in scen if s["name"] in ONLY]
    # clients on tap0 (on-link for the VM); nothing addressed to them reaches our kernel stacks,
    # so neither side answers IPVS's packets with RSTs or ICMP errors of its own
    clients = sorted({st["client"][0] for s in scen for st in s["steps"] if st["kind"] == "packet"})
    for a in clients:
        sh("ip", "addr", "add", f"{a}/22", "dev", "tap0")
    sh("nft", "add table inet oconn")
    sh("nft", "add chain inet oconn in { type filter hook input priority 0; policy accept; }")
    sh("nft", "add rule inet oconn in iifname tap0 drop")
    sh("ip", "netns", "exec", NS_R, "nft", "add table inet oconn")
    sh("ip", "netns", "exec", NS_R, "nft",
       "add chain inet oconn in { type filter hook input priority 0; policy accept; }")
    sh("ip", "netns", "exec", NS_R, "nft", "add rule inet oconn in iifname tap1 drop")
    await_sig("ready", 180)
    log = open(f"{CONN}/host-steps.jsonl", "w")
    ident = 0x1000
    t_start = time.time()
    for s in scen:
        t_sc = time.time()
        print(f"host: scenario {s['name']} vip {s['vip']}", flush=True)
        steps = []
        for r in oc.RESET:   # every scenario starts from the same defaults
            if r[0] == "sysctl":
                steps.append(dict(kind="sysctl", name=r[1], value=r[2], line=f"sysctl {r[1]} {r[2]}", reset=True))
            else:
                steps.append(dict(kind="ipvsadm", args=r[1], line=f"ipvsadm {r[1]}", reset=True))
        steps += s["steps"]
        last_snap = None
        i = 0
        while i < len(steps):
            st = steps[i]
            if st["kind"] in ("ipvsadm", "sysctl"):
                batch = [st]
                while i + 1 < len(steps) and steps[i + 1]["kind"] in ("ipvsadm", "sysctl"):
                    i += 1
                    batch.append(steps[i])
                n, resp = request([guest_cmd(b) for b in batch], snap=True)
                for k, b in enumerate(batch):
                    rec = dict(b, scenario=s["name"], vip=s["vip"], req=n, cmd_index=k,
                               snap=k == len(batch) - 1)
                    log.write(json.dumps(rec) + "\n")
                last_snap = resp["snap"]
            elif st["kind"] == "wait":
                time.sleep(st["seconds"])
                n, resp = request([], snap=True)
                log.write(json.dumps(dict(st, scenario=s["name"], vip=s["vip"], req=n, snap=True)) + "\n")
                last_snap = resp["snap"]
            else:
                vip, vport = st["vip"]
                ca, cp = st["client"]
                if st["from"] == "client":
                    src, dst = (ca, cp), (vip, vport)
                    cmd = [PY, f"{TOOLS}/craft.py"]
                else:
                    rs = st["rs"]
                    resolved = rs is None
                    if rs is None:
                        cands = [e for e in (last_snap or {}).get("conns", [])
                                 if e["client"] == f"{ca}:{cp}" and e["virtual"] == f"{vip}:{vport}"]
                        if len(cands) != 1:
                            raise SystemExit(f"host: {s['name']}: `{st['line']}`: {len(cands)} entries "
                                             f"for {ca}:{cp} in the last snapshot")
                        rs = oc.addr_port(cands[0]["dest"])
                    st = dict(st, rs=rs, resolved=resolved)
                    src, dst = rs, (ca, cp)
                    cmd = ["ip", "netns", "exec", NS_R, PY, f"{TOOLS}/craft.py"]
                burst = st.get("burst")
                if burst:
                    # one craft.py run: every port of the range, `reps` packets each
                    ports, reps = burst["ports"], burst["reps"]
                    sport = f"{ports[0]}-{ports[-1]}"
                    pkts = [(p, k) for p in ports for k in range(reps)]
                else:
                    sport, reps, pkts = str(src[1]), 1, [(src[1], 0)]
                cmd += ["--src", src[0], "--sport", sport, "--dst", dst[0], "--dport", str(dst[1]),
                        "--ident", str(ident)] + [st["seg"]] * reps
                out = sh(*cmd)
                t_sends = [float(ln.rsplit("t=", 1)[1]) for ln in out.strip().split("\n")]
                if len(t_sends) != len(pkts):
                    raise SystemExit(f"host: {s['name']}: `{st['line']}`: craft.py sent {len(t_sends)} packets")
                # let the guest process it (them) before the snapshot
                time.sleep(0.15 if len(pkts) == 1 else 0.4)
                n, resp = request([], snap=True)
                for k, ((port, _), t_send) in enumerate(zip(pkts, t_sends)):
                    rec = dict(st, scenario=s["name"], vip=s["vip"], req=n, snap=k == len(pkts) - 1,
                               ip_id=ident, src=f"{src[0]}:{port}", dst=f"{dst[0]}:{dst[1]}",
                               t_host_send=t_send)
                    if burst:
                        rec["burst"] = st["line"]
                        rec["line"] = f"c {src[0]}:{port} {st['seg']}" + \
                            (f" :{dst[1]}" if st["line"].split()[-1].startswith(":") else "")
                        rec["client"] = (src[0], port)
                    log.write(json.dumps(rec) + "\n")
                    ident += 1
                last_snap = resp["snap"]
            log.flush()
            i += 1
        print(f"host: scenario {s['name']} took {time.time() - t_sc:.1f} s", flush=True)
    request(["__end__"], snap=False)
    print(f"host: all scenarios in {time.time() - t_start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
