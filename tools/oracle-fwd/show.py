#!/usr/bin/env python3
"""show.py FILE.json...  -- print lvs-oracle-fwd/1 vectors compactly: the configuration, then per
step the input packet (`>`) and every frame the director sent because of it (`<`), decoded
(tunnels and quoted packets nested), with checksum checks (`!csum`/`!ipcsum` = invalid) and the
fields the kernel fills unpredictably in [brackets]."""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pkt as P  # noqa: E402


def render(d):
    names = {v: k for k, v in d["macs"].items()}
    dr = d["director"]
    names[dr["client_if"]["mac"]] = "director"
    names[dr["rs_if"]["mac"]] = "director"
    L = [f"=== {d['scenario']} ({d['kernel']}{', IPv6' if d.get('family', 4) == 6 else ''}): {d['description']}",
         f"    vip {d['vip']}{'' if d.get('vip_local', True) else ' (not local)'}"
         + "".join(f"  {n}={a}" for n, a in d["addrs"].items())
         + (f"  sysctls {d['sysctls']}" if d["sysctls"] else "")
         + "".join(f"  route {r['dst']} dev {r['dev']}" + (f" mtu {r['mtu']}" if "mtu" in r else "")
                  for r in d["routes"])]
    L += [f"    ipvsadm {c}" for c in d["ipvsadm"]]
    for k, s in enumerate(d["steps"]):
        L.append(f"[{k}] {s.get('host', s['from'])}: {s['note']}")
        L.append("  > " + P.decode(bytes.fromhex(s["in"])).replace("\n", "\n    "))
        if not s["out"]:
            L.append("  < (nothing)")
        for o in s["out"]:
            vary = ",".join(v["field"] for v in o.get("vary", []))
            L.append(f"  < {o['if']} -> {names.get(o['eth_dst'], o['eth_dst'])}"
                     f"{f' [{vary}]' if vary else ''}: "
                     + P.decode(bytes.fromhex(o["hex"])).replace("\n", "\n    "))
    return "\n".join(L) + "\n\n"


def main():
    for path in sys.argv[1:]:
        if os.path.basename(path) == "guest-info.json":
            continue
        sys.stdout.write(render(json.load(open(path))))


if __name__ == "__main__":
    main()
