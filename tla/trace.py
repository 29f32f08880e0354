#!/usr/bin/env python3
"""Print a TLC counterexample of KameStm.tla compactly, one line per step.

Usage:
    java ... tlc2.TLC ... -dumpTrace json /tmp/trace.json -config X.cfg KameStm.tla
    python3 tla/trace.py /tmp/trace.json

Notation:
    serial      c.t  = Lamport counter c minted by thread t (t = 0: initial)
    P[s]{...}   priority wrapper with serial s holding a packet
    B>P[s]      bundled reference into P, serial s
    L>P[s]pkt   limbo under P carrying pkt
    leaf packet pay#id      inner packet {C1:.., C2:..}  (! = missing, _ = void)
    tags        node=stamp (c.t) for every priority tag that is set
    "<- t k"    the step was thread t's action k
"""
import json
import sys


def ser(s, base):
    if s == "Null" or s is None:
        return "-"
    return f"{s // base}.{s % base}"


def pkt(p, base):
    if p == "Null" or p is None:
        return "_"
    sub = p.get("sub")
    if not sub:  # leaf
        return f"{p['pay']}#{ser(p['id'], base)}"
    inner = ",".join(f"{k}:{pkt(v, base)}" for k, v in sorted(sub.items()))
    return f"{{{inner}}}{'!' if p['missing'] else ''}#{ser(p['id'], base)}"


def wrapper(w, base):
    if w == "Null" or w is None:
        return "-"
    if w["by"] == "Null":
        return f"P[{ser(w['ser'], base)}]{pkt(w['pkt'], base)}"
    if w["pkt"] != "Null":
        return f"L>{w['by']}[{ser(w['ser'], base)}]{pkt(w['pkt'], base)}"
    return f"B>{w['by']}[{ser(w['ser'], base)}]"


def frame(f, base):
    if f["kind"] == "bundle":
        coll = " ".join(pkt(c["pkt"], base) + ("*" if c["w"] != "Null" else "")
                        for c in f["coll"])
        return f"bundle({f['node']} s={ser(f['ser'], base)} coll=[{coll}])"
    chain = ">".join(c["node"] for c in f["chain"])
    return f"unbundle({f['node']} {f['mode']} chain={chain or '-'})"


def render(state, base):
    link = "  ".join(f"{n}={wrapper(w, base)}" for n, w in sorted(state["linkage"].items()))
    tags = " ".join(f"{n}={ser(t, base)}" for n, t in sorted(state["priorityTag"].items())
                    if t != "Null")
    threads = []
    for i, p in enumerate(state["pc"]):
        l = state["local"][i]
        stack = " / ".join(frame(f, base) for f in l["stack"])
        threads.append(f"T{i + 1}:{p}@{state['target'][i]}"
                       f" ser={ser(state['serial'][i], base)} budget={state['budget'][i]}"
                       + (f" stamp={ser(state['stamp'][i], base)}" if state["stamp"][i] != "Null" else "")
                       + (f" [{stack}]" if stack else ""))
    return link + (f"   tags: {tags}" if tags else ""), threads


def main():
    d = json.load(open(sys.argv[1]))
    states = d["state"]
    base = len(states[0][1]["serial"]) + 1
    actions = {a[2][0]: a[1] for a in d.get("action", [])}
    for idx, st in states:
        a = actions.get(idx)
        head = f"{idx:>3}"
        if a:
            t = a.get("context", {}).get("t", "?")
            head += f" <- T{t} {a['name']}"
        else:
            head += " (initial)" if idx == 1 else ""
        link, threads = render(st, base)
        print(head)
        print("      " + link)
        for th in threads:
            print("      " + th)
    # A lasso: TLC reports the state the last one loops back to.
    if len(d.get("action", [])) >= len(states):
        last = d["action"][-1]
        print(f"  back to state {last[2][0]} via T{last[1].get('context', {}).get('t', '?')} "
              f"{last[1]['name']}")


if __name__ == "__main__":
    main()
