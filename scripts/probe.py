#!/usr/bin/env python3
"""Client-side probe for the lab and benchmarks.

Connects to HOST:PORT every INTERVAL seconds for at most DURATION seconds
(bounded in count and time), reads one line, and records who answered. Prints
each change of answer with a timestamp and, at the end, the longest gap
without an answer in milliseconds. With --until TEXT it stops as soon as an
answer containing TEXT has been seen after a failure or change.
"""
import argparse, socket, sys, time, json

def probe(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = s.recv(256)
            return data.decode(errors="replace").strip() or None
    except OSError:
        return None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host"); ap.add_argument("port", type=int)
    ap.add_argument("--interval", type=float, default=0.005)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=0.05)
    ap.add_argument("--until-change", action="store_true", help="stop once a different front node (the part after 'via') answers")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    start = time.monotonic(); last_ok = None; last_who = None; max_gap = 0.0
    changes = []; n = 0; fails = 0; changed = False
    max_count = int(a.duration / max(a.interval, 0.001)) + 1
    while n < max_count and time.monotonic() - start < a.duration:
        n += 1
        t = time.monotonic()
        who = probe(a.host, a.port, a.timeout)
        if who is None:
            fails += 1
        else:
            if last_ok is not None:
                max_gap = max(max_gap, t - last_ok)
            last_ok = t
        # Who answered: the front node ("... via 198.51.100.2") if the backend says so.
        key = who.split(" via ")[-1] if who else None
        if key != last_who:
            changes.append((round((t - start) * 1000, 1), who))
            if last_who is not None and key is not None:
                changed = True
            last_who = key
        if a.until_change and changed:
            break
        delay = a.interval - (time.monotonic() - t)
        if delay > 0:
            time.sleep(delay)
    res = {"probes": n, "failed": fails, "max_gap_ms": round(max_gap * 1000, 1), "changes": changes}
    if a.json:
        print(json.dumps(res))
    else:
        for ms, who in changes:
            print(f"  t={ms:9.1f} ms  {who or 'NO ANSWER'}")
        print(f"  probes {n}, failed {fails}, longest gap {res['max_gap_ms']} ms")

if __name__ == "__main__":
    main()
