#!/usr/bin/env python3
"""Compare two saved benchmark results row by row: the quality numbers of each case both hold.

    python benchmarks/compare_results.py detection detection_digits_check --tag redesign_check_detection

Reads benchmarks/results/<A>.json and <B>.json (the ``rows`` every benchmark saves), and for every case
in both reports each numeric column except wall times: A's value, B's, and whether they are equal
(bit for bit) or how far apart. Writes benchmarks/results/<tag>.json and .md. Used to show that a
change of code left the numbers where they were (same seed, same device; a different torch version
can move the last digits).
"""
from __future__ import annotations

import argparse
import json
import math

from _cases import RESULTS, save_results

TIMES = ("scan_s", "scan_s_no_limit", "limit_time_ratio", "train_s", "images_per_s")


def compare(a: dict, b: dict) -> list[dict]:
    rows_b = {r["case"]: r for r in b["rows"]}
    out = []
    for ra in a["rows"]:
        rb = rows_b.get(ra["case"])
        if rb is None:
            continue
        for key, va in ra.items():
            vb = rb.get(key)
            if key in TIMES or isinstance(va, bool) or not isinstance(va, (int, float)) or \
                    not isinstance(vb, (int, float)):
                continue
            same = va == vb or (isinstance(va, float) and math.isnan(va) and math.isnan(vb))
            out.append({"case": ra["case"], "column": key, "a": va, "b": vb, "equal": bool(same),
                        "abs_diff": 0.0 if same else abs(float(va) - float(vb))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tag", required=True)
    args = ap.parse_args()
    a, b = (json.loads((RESULTS / f"{name}.json").read_text()) for name in (args.a, args.b))
    rows = compare(a, b)
    n_equal = sum(r["equal"] for r in rows)
    meta = {"a": args.a, "b": args.b, "a_meta": a.get("meta"), "b_meta": b.get("meta"),
            "values": len(rows), "equal": n_equal, "max_abs_diff": max((r["abs_diff"] for r in rows), default=0.0)}
    lines = [f"**{args.a}** against **{args.b}**: {n_equal} of {len(rows)} values equal bit for bit; largest "
             f"difference {meta['max_abs_diff']:.3g}. A: torch {(a.get('meta') or {}).get('torch')}, "
             f"{(a.get('meta') or {}).get('date')}; B: torch {(b.get('meta') or {}).get('torch')}, "
             f"{(b.get('meta') or {}).get('date')}.", "",
             "| case | column | A | B | equal |", "|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['column']} | {r['a']:.6g} | {r['b']:.6g} | {'yes' if r['equal'] else 'no'} |"
              for r in rows]
    save_results(args.tag, {"meta": meta, "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
