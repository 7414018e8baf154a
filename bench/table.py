"""Turn `NAME WRK rps=.. p50_ms=.. p99_ms=.. errors=.. non2xx=..` lines into
a Markdown table."""
import sys

print("| path | req/s | p50 | p99 | errors |")
print("|---|---|---|---|---|")
for line in sys.stdin:
    name, _, *rest = line.split()
    kv = dict(part.split("=") for part in rest)
    errors = int(kv["errors"]) + int(kv["non2xx"])
    print(f"| {name} | {float(kv['rps']):,.0f} | {kv['p50_ms']} ms | {kv['p99_ms']} ms | {errors} |")
