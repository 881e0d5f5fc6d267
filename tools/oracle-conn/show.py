#!/usr/bin/env python3
"""show.py FILE.json...  -- print recorded vectors compactly: each step, what the kernel did with
each packet, and the snapshot (entries with expire; per destination W/Persist/Active/InAct/Conns)."""
import json
import sys


def main():
    for path in sys.argv[1:]:
        d = json.load(open(path))
        print(f"=== {d['scenario']} ({d['kernel']['release']}): {d['description']}")
        for s in d["steps"]:
            if s.get("reset"):
                continue
            line = f"[{s['index']:2}] t={s['t']:7.3f} {s['line']}"
            if s["kind"] == "packet":
                o = dict(s["outcome"])
                o.pop("t_out", None)
                line += "  => " + " ".join(f"{k}={v}" for k, v in o.items())
            elif s["kind"] in ("ipvsadm", "sysctl"):
                if s["rc"] != 0 or s.get("output"):
                    line += f"  (rc {s['rc']}: {s.get('output', '')!r})"
                if s["kind"] == "sysctl":
                    line += f"  readback={s['readback']}"
            print(line)
            sn = s.get("snapshot")
            if not sn:
                continue
            if sn.get("sysctls") or "mem_pages" in sn:
                print(f"        mem={sn.get('mem_pages')} pages "
                      + " ".join(f"{k}={v}" for k, v in sn.get("sysctls", {}).items()))
            if len(sn["conns"]) > 12:
                # long listings: entries per client address and state
                groups = {}
                for e in sn["conns"]:
                    k = (e["protocol"], e["state"], e["client"].rpartition(":")[0])
                    groups.setdefault(k, []).append(e["expire"])
                for (pr, st, cl), ex in sorted(groups.items()):
                    print(f"        {pr:4} {st:11} {cl:15} x{len(ex):<3} expire {min(ex)}..{max(ex)} s")
            else:
                for e in sn["conns"]:
                    print(f"        {e['protocol']:4} {e['expire']:4}s {e['state']:11} {e['client']:21} "
                          f"{e['virtual']:21} {e['dest']}")
            for r in sn["dests"]:
                print(f"        -> {r['dest']:21} w={r['weight']} P={r['persist']} A={r['active']} "
                      f"I={r['inact']} conns={r.get('conns')}")


if __name__ == "__main__":
    main()
