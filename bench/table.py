"""Turn `NAME WRK rps=.. p50_ms=.. p99_ms=.. errors=.. non2xx=..` lines into
a Markdown table. Names `bare-axum-users#N` and `users-cached#N` are rounds
of one pair: their ratios, and the median ratio, follow the table."""
import statistics
import sys

print("| path | req/s | p50 | p99 | errors |")
print("|---|---|---|---|---|")
rounds = {}
for line in sys.stdin:
    name, _, *rest = line.split()
    kv = dict(part.split("=") for part in rest)
    errors = int(kv["errors"]) + int(kv["non2xx"])
    print(f"| {name} | {float(kv['rps']):,.0f} | {kv['p50_ms']} ms | {kv['p99_ms']} ms | {errors} |")
    if "#" in name:
        path, round_ = name.split("#", 1)
        rounds.setdefault(round_, {})[path] = float(kv["rps"])
ratios = [
    r["users-cached"] / r["bare-axum-users"]
    for r in rounds.values()
    if r.get("bare-axum-users") and "users-cached" in r
]
if ratios:
    listed = ", ".join(f"{x:.2f}" for x in ratios)
    print(f"\nGET /users/ against the bare handler: {listed} (median {statistics.median(ratios):.2f}x)")
