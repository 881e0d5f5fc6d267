#!/usr/bin/env python3
"""post.py RUN_DIR OUT_DIR [--kernel-package "PKG VERSION"] [--command CMD]

Turns one recording (RUN_DIR = run.sh's output folder: conn/host-steps.jsonl, conn/resp/N,
conn/eth0.pcap, conn/eth1.pcap from the guest) into one JSON file per scenario in OUT_DIR
(format "lvs-oracle-conn/1", described in README.md). Times are seconds since the scenario's first
step on the guest's clock: a packet's time is when the guest captured it arriving, a command's
when the guest started it, a snapshot's when `ipvsadm -Lcn` was started."""
import argparse
import datetime
import json
import os
import sys

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oc  # noqa: E402

GUEST_MAC = {"eth0": "52:54:00:00:00:02", "eth1": "52:54:00:00:01:02"}
PROTO = {"tcp": 6, "udp": 17, "sctp": 132}
SCTP_CHUNK_NAMES = {0: "data", 1: "init", 2: "init-ack", 3: "sack", 4: "heartbeat", 6: "abort",
                    7: "shutdown", 8: "shutdown-ack", 9: "error", 10: "cookie-echo", 11: "cookie-ack",
                    14: "shutdown-complete"}


def r6(x):
    return round(x, 6)


class Frames:
    def __init__(self, run):
        self.f = {}
        for d in ("eth0", "eth1"):
            fr = oc.pcap_frames(f"{run}/conn/{d}.pcap")
            for x in fr:
                x["dir"] = "out" if x["smac"] == GUEST_MAC[d] else "in"
            self.f[d] = fr

    def find(self, dev, direction, pred, after=None, before=None):
        for x in self.f[dev]:
            if x["dir"] != direction:
                continue
            if after is not None and x["ts"] < after - 0.002:
                continue
            if before is not None and x["ts"] > before:
                continue
            if pred(x):
                return x
        return None


def reply_desc(x):
    if x["proto"] == 6:
        return "tcp-" + oc.tcp_flags_str(x.get("tcp_flags", 0))
    if x["proto"] == 1:
        return f"icmp-{x['icmp_type']}-{x['icmp_code']}"
    if x["proto"] == 132:
        return "sctp-" + SCTP_CHUNK_NAMES.get(x.get("sctp_chunk"), str(x.get("sctp_chunk")))
    return f"proto-{x['proto']}"


def delivered(prev, cur):
    """Packets the guest's own stack received (IP InDelivers + InUnknownProtos) between snapshots."""
    def tot(s):
        ip = s["snmp"]["Ip"]
        return ip["InDelivers"] + ip["InUnknownProtos"]
    return tot(cur) - tot(prev)


def outcome(st, frames, local, t_next):
    """What the kernel did with one packet, from the guest's captures and `local`, the number of
    packets the guest's own stack received meanwhile (IP counters)."""
    proto = PROTO[st["proto"]]
    src_a, src_p = oc.addr_port(st["src"])
    dst_a, dst_p = oc.addr_port(st["dst"])
    ident = st["ip_id"]
    in_dev, out_dev = ("eth0", "eth1") if st["from"] == "client" else ("eth1", "eth0")
    fin = frames.find(in_dev, "in", lambda x: x["id"] == ident and x["proto"] == proto
                      and x["src"] == src_a and x["dst"] == dst_a and x["sport"] == src_p)
    if fin is None:
        raise SystemExit(f"post: {st['scenario']}: `{st['line']}` (ip id {ident}) not captured arriving on {in_dev}")
    t_in = fin["ts"]
    res = {"t_in": t_in}
    if st["from"] == "client":
        fw = frames.find(out_dev, "out", lambda x: x["id"] == ident and x["proto"] == proto
                         and x["src"] == src_a and x["sport"] == src_p, after=t_in, before=t_next)
    else:
        fw = frames.find(out_dev, "out", lambda x: x["id"] == ident and x["proto"] == proto
                         and x["dst"] == dst_a and x["dport"] == dst_p, after=t_in, before=t_next)
    icmp = frames.find(in_dev, "out", lambda x: x["proto"] == 1 and x["dst"] == src_a
                       and x.get("icmp_inner") and x["icmp_inner"]["id"] == ident
                       and x["icmp_inner"]["src"] == src_a, after=t_in, before=t_next)
    reply = frames.find(in_dev, "out", lambda x: x["proto"] == proto and x["src"] == dst_a
                        and x["sport"] == dst_p and x["dst"] == src_a and x["dport"] == src_p,
                        after=t_in, before=t_next)
    if fw is not None:
        res["t_out"] = fw["ts"]
        if st["from"] == "client":
            res["verdict"] = "forward"
            res["to"] = f"{fw['dst']}:{fw['dport']}"
            if fw["dst"] == dst_a:
                res["method"] = "route"      # DR: the VIP packet is sent on unchanged
            else:
                res["method"] = "masq"
        else:
            if (fw["src"], fw["sport"]) == (src_a, src_p):
                res["verdict"] = "routed"    # IPVS left it alone; the guest routed it as it was
            else:
                res["verdict"] = "forward"
                res["method"] = "masq"
                res["from"] = f"{fw['src']}:{fw['sport']}"
            res["to"] = f"{fw['dst']}:{fw['dport']}"
    elif local > 0:
        res["verdict"] = "local"             # passed by IPVS to the guest's own stack
        answer = icmp or reply
        if answer is not None:
            res["reply"] = reply_desc(answer)
    elif icmp is not None:
        res["verdict"] = "icmp"              # IPVS answered (no destination available)
        res["icmp"] = [icmp["icmp_type"], icmp["icmp_code"]]
        res["icmp_from"] = icmp["src"]
        res["icmp_to"] = icmp["dst"]
        q = icmp["icmp_inner"]
        res["icmp_quoted"] = f"{q['src']}:{q['sport']} > {q['dst']}:{q['dport']}"
        res["t_out"] = icmp["ts"]
    else:
        res["verdict"] = "drop"
    if local > 0 and res["verdict"] != "local":
        res["warning"] = f"{local} packet(s) delivered locally as well"
    return res


ACTIVE = {"TCP": {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"}, "SCTP": {"ESTABLISHED"}, "UDP": set()}


def check_snapshot(sj, random_evictions=False):
    """Problems that make a snapshot unusable as a reference: per-destination counters that do not
    add up to the listed entries (an entry expired between the two listings), or an entry listed at
    0 s (it expires about when it is read). With `random_evictions` (a scenario with count
    classes: drop_entry deletes entries once a second, also between the listings, and the replay
    compares no ActiveConn/InActConn then) the counters are not checked."""
    out = []
    for e in sj["conns"]:
        if e["expire"] <= 0:
            out.append(f"entry listed with expire {e['expire']} s: {e}")
    for r in ([] if random_evictions else sj["dests"]):
        proto, svc = r["service"].split()
        vip = svc.rpartition(":")[0]
        daddr = r["dest"].rpartition(":")[0]
        act = inact = pers = 0
        for e in sj["conns"]:
            if e["protocol"] != proto:
                continue
            template = e["client"].endswith(":0")
            if template:
                # a neutralised template is re-keyed to VIP:65535 -> RS:65535 (connections.md §8.2)
                neutral = e["virtual"] == f"{vip}:65535" and e["dest"] == f"{daddr}:65535"
                if (e["virtual"] == svc and e["dest"] == r["dest"]) or neutral:
                    pers += 1
            elif e["virtual"] == svc and e["dest"] == r["dest"]:
                if e["state"] in ACTIVE[proto]:
                    act += 1
                else:
                    inact += 1
        if (act, inact, pers) != (r["active"], r["inact"], r["persist"]):
            out.append(f"{r['dest']} of {r['service']}: listed ActiveConn/InActConn/PersistConn "
                       f"{r['active']}/{r['inact']}/{r['persist']}, entries give {act}/{inact}/{pers}")
    return out


def snapshot_json(snap, vip, t0):
    conns = [e for e in snap["conns"] if e["virtual"].rpartition(":")[0] == vip]
    dests, services = [], []
    for svc, body in snap["persist"].items():
        if svc.split()[1].rpartition(":")[0] != vip:
            continue
        stats = snap["stats"].get(svc, {"dests": {}, "totals": {}})
        services.append({"service": svc, "line": body["line"], **stats.get("totals", {})})
        for d, v in body["dests"].items():
            row = {"service": svc, "dest": d, **v}
            row.update(stats["dests"].get(d, {}))
            dests.append(row)
    conns.sort(key=lambda e: (e["client"], e["virtual"], e["dest"], e["state"]))
    out = {"t": r6(snap["ts0"] - t0), "t_listing_end": r6(snap["ts1"] - t0), "t_end": r6(snap["ts2"] - t0)}
    mem = snap.get("meminfo_kb") or {}
    if "MemFree" in mem and "Buffers" in mem:
        # the defenses' figure: free + buffer pages (4 KiB), read right after the listing
        out["mem_pages"] = (mem["MemFree"] + mem["Buffers"]) // 4
        out["meminfo_kb"] = {"MemFree": mem["MemFree"], "Buffers": mem["Buffers"]}
    if snap.get("sysctls"):
        out["sysctls"] = snap["sysctls"]
    out.update({"conns": conns, "services": services, "dests": dests})
    return out


def compact_json(v, ind=0):
    """JSON with one space of indentation per level, but every object or list whose members are
    all scalars on one line (entries, counters), so that long listings stay readable."""
    def flat(x):
        return not isinstance(x, (dict, list))
    if (isinstance(v, dict) and v and all(flat(x) for x in v.values())) or \
            (isinstance(v, list) and v and all(flat(x) for x in v)):
        return json.dumps(v, separators=(", ", ": "))
    pad = " " * (ind + 1)
    if isinstance(v, dict) and v:
        body = ",\n".join(f"{pad}{json.dumps(k)}: {compact_json(x, ind + 1)}" for k, x in v.items())
        return "{\n" + body + "\n" + " " * ind + "}"
    if isinstance(v, list) and v:
        body = ",\n".join(pad + compact_json(x, ind + 1) for x in v)
        return "[\n" + body + "\n" + " " * ind + "]"
    return json.dumps(v)


def conn_tab_size(line):
    """`IP Virtual Server version 1.2.1 (size=4096)` -> 4096 (None if absent)."""
    m = line.rpartition("size=")[2].rstrip(")")
    return int(m) if m.isdigit() else None


def burst_local(out_steps, st, snap, prev_snap, warnings, name):
    """After the last packet of a burst: the packets the guest's own stack received during the
    burst (IP counters, one figure for all) are the burst's packets found neither forwarded nor
    answered by ICMP; mark them `local` when the numbers agree, else warn."""
    pk = [o for o in out_steps if o.get("burst") == st["burst"] and o["kind"] == "packet"]
    local = delivered(prev_snap, snap) if prev_snap else 0
    cand = [o for o in pk if o["outcome"]["verdict"] == "drop"]
    if local == 0:
        return
    if local != len(cand):
        warnings.append(f"{name} `{st['burst']}`: {local} packet(s) delivered locally, "
                        f"{len(cand)} of the burst not seen leaving")
        return
    for o in cand:
        o["outcome"]["verdict"] = "local"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("out")
    ap.add_argument("--kernel-package", default="")
    ap.add_argument("--command", default="tools/oracle-conn/record.sh")
    a = ap.parse_args()
    run = a.run
    steps = [json.loads(l) for l in open(f"{run}/conn/host-steps.jsonl")]
    resp = {}
    for st in steps:
        if st["req"] not in resp:
            resp[st["req"]] = oc.parse_response(open(f"{run}/conn/resp/{st['req']}").read())
    frames = Frames(run)
    info = dict(l.strip().split("=", 1) for l in open(f"{run}/conn/guest-info.txt") if "=" in l)
    scen = {s["name"]: s for s in oc.parse_scenarios(f"{run}/tools/scenarios.txt")}
    os.makedirs(a.out, exist_ok=True)
    recorded = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    by_scen = {}
    for st in steps:
        by_scen.setdefault(st["scenario"], []).append(st)
    # the snapshot before each request (IP counter deltas span scenarios)
    reqs = sorted(resp)
    prev_of = {r: (resp[reqs[k - 1]]["snap"] if k else None) for k, r in enumerate(reqs)}
    # start time of each request: to bound the frame search of a packet to its own step
    req_start = {}
    for r in reqs:
        c = resp[r]["cmds"]
        req_start[r] = c[0]["t0"] if c else resp[r]["snap"]["ts0"]
    summary = []
    warnings = []
    for name, sts in by_scen.items():
        first = resp[sts[0]["req"]]["cmds"][0]["t0"]
        t0 = first
        out_steps = []
        sc = scen[name]
        for idx, st in enumerate(sts):
            r = resp[st["req"]]
            o = {"index": idx, "kind": st["kind"], "line": st["line"], "reset": bool(st.get("reset"))}
            if st["kind"] in ("ipvsadm", "sysctl"):
                c = r["cmds"][st["cmd_index"]]
                o["t"] = r6(c["t0"] - t0)
                o["t_end"] = r6(c["t1"] - t0)
                o["rc"] = c["rc"]
                if st["kind"] == "ipvsadm":
                    o["args"] = st["args"]
                    o["output"] = c["out"]
                else:
                    o["name"], o["value"] = st["name"], st["value"]
                    lines = c["out"].split("\n")
                    rb = [l for l in lines if l.startswith("readback=")]
                    o["readback"] = rb[-1][len("readback="):] if rb else None
                    o["output"] = "\n".join(l for l in lines if not l.startswith("readback="))
            elif st["kind"] == "wait":
                o["seconds"] = st["seconds"]
                o["t"] = r6(r["snap"]["ts0"] - t0)
            else:
                o.update({"from": st["from"], "proto": st["proto"], "src": st["src"], "dst": st["dst"],
                          "seg": st["seg"], "ip_id": st["ip_id"]})
                if st["from"] == "server":
                    o["rs_from_entry"] = bool(st.get("resolved"))
                if st.get("burst"):
                    o["burst"] = st["burst"]
                nxt = [q for q in reqs if q > st["req"]]
                t_next = req_start[nxt[0]] if nxt else None
                prev = prev_of[st["req"]]
                local = delivered(prev, r["snap"]) if prev else 0
                if st.get("burst"):
                    local = 0    # shared by the burst's packets: assigned after its last one
                res = outcome(st, frames, local, t_next)
                o["t"] = r6(res.pop("t_in") - t0)
                if "t_out" in res:
                    res["t_out"] = r6(res["t_out"] - t0)
                o["outcome"] = res
                o["t_host_send"] = st["t_host_send"]
            o["snapshot"] = snapshot_json(r["snap"], st["vip"], t0) if st.get("snap") else None
            if o["snapshot"]:
                for w in check_snapshot(o["snapshot"], bool(sc["count_classes"])):
                    warnings.append(f"{name} step {idx} `{st['line']}`: {w}")
            if o.get("outcome", {}).get("warning"):
                warnings.append(f"{name} step {idx} `{st['line']}`: {o['outcome']['warning']}")
            out_steps.append(o)
            if st.get("burst") and st.get("snap"):
                burst_local(out_steps, st, r["snap"], prev_of[st["req"]], warnings, name)
        doc = {
            "format": "lvs-oracle-conn/1",
            "scenario": name,
            "description": " ".join(sc["desc"]),
            "kernel": {"release": info.get("kernel", ""), "package": a.kernel_package},
            "ipvsadm": info.get("ipvsadm", ""),
            "recorded_at": recorded,
            "command": a.command,
            "vip": sc["vip"],
            # the guest's IPv4 addresses per interface, in `ip addr` order (eth0: clients, eth1:
            # real servers)
            "director": {d: [x.split("/")[0] for x in info.get(f"addr_{d}", "").split()]
                         for d in ("eth0", "eth1")},
            "icmp_errors_use_inbound_ifaddr": info.get("icmp_errors_use_inbound_ifaddr"),
            "conn_tab_size": conn_tab_size(info.get("conn_tab", "")),
            "time": "seconds since the scenario's first step, guest clock (packets: captured arriving; "
                    "commands: started; snapshots: `ipvsadm -Lcn` started)",
            "steps": out_steps,
        }
        if sc["count_classes"]:
            doc["count_classes"] = sc["count_classes"]
        with open(f"{a.out}/{name}.json", "w") as f:
            f.write(compact_json(doc) + "\n")
        dur = out_steps[-1]["snapshot"]["t_end"] if out_steps[-1]["snapshot"] else out_steps[-1]["t"]
        summary.append(f"{name:24} {len(out_steps):3} steps {dur:7.1f} s")
    with open(f"{a.out}/summary.txt", "w") as f:
        f.write("\n".join(summary) + "\n")
        for w in warnings:
            f.write(f"WARNING {w}\n")
    print("\n".join(summary))
    if warnings:
        print("\n".join(f"WARNING {w}" for w in warnings), file=sys.stderr)
        print(f"post: {len(warnings)} marginal snapshot(s): the guest was too slow for a scenario's "
              "timing; record again (nothing else running on the host)", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
