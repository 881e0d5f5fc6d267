#!/usr/bin/env python3
"""diffruns.py DIR_A DIR_B  -- compare two recordings of the same scenarios (two VM boots):
every step must have the same number of output frames, on the same interface, to the same MAC,
of the same length, and their bytes may differ only inside the `vary` ranges post.py marked.
Prints every difference; exits 1 if one falls outside the marked ranges."""
import json
import os
import sys


def main():
    a, b = sys.argv[1:3]
    bad = n_frames = n_diff = 0
    for fn in sorted(os.listdir(a)):
        if not fn.endswith(".json") or fn == "guest-info.json":
            continue
        da, db = json.load(open(f"{a}/{fn}")), json.load(open(f"{b}/{fn}"))
        for k, (sa, sb) in enumerate(zip(da["steps"], db["steps"])):
            where = f"{da['scenario']} step {k}"
            if sa["in"] != sb["in"]:
                print(f"{where}: inputs differ"); bad += 1
            if len(sa["out"]) != len(sb["out"]):
                print(f"{where}: {len(sa['out'])} vs {len(sb['out'])} output frames"); bad += 1
                continue
            for j, (oa, ob) in enumerate(zip(sa["out"], sb["out"])):
                n_frames += 1
                if (oa["if"], oa["eth_dst"]) != (ob["if"], ob["eth_dst"]):
                    print(f"{where} out {j}: interface/MAC differ"); bad += 1
                ha, hb = bytes.fromhex(oa["hex"]), bytes.fromhex(ob["hex"])
                if len(ha) != len(hb):
                    print(f"{where} out {j}: lengths {len(ha)} vs {len(hb)}"); bad += 1
                    continue
                va = {i for v in oa.get("vary", []) for i in range(v["off"], v["off"] + v["len"])}
                vb = {i for v in ob.get("vary", []) for i in range(v["off"], v["off"] + v["len"])}
                if va != vb:
                    print(f"{where} out {j}: vary marks differ"); bad += 1
                diff = [i for i in range(len(ha)) if ha[i] != hb[i]]
                if diff:
                    n_diff += 1
                outside = [i for i in diff if i not in va]
                if outside:
                    print(f"{where} out {j}: bytes {outside} differ outside the vary ranges"); bad += 1
                unused = sorted(va - set(diff))
                if unused:
                    print(f"{where} out {j}: marked but equal in both runs: bytes {unused}")
    print(f"diffruns: {n_frames} frames compared, {n_diff} differ (inside vary ranges), {bad} problems")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
