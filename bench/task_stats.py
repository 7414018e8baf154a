"""Send-to-stored figures from the database: for every message stored by a
task, the time between the task's creation (the send was accepted) and the
message's sent_at (it was stored). Prints key=value pairs."""
import sqlite3
import subprocess
import sys
from datetime import datetime


def parse(ts: str) -> datetime:
    ts = ts.replace("T", " ").replace("Z", "+00:00")
    return datetime.fromisoformat(ts)


def rows_sqlite(url: str):
    path = url.split("://", 1)[1].split("?", 1)[0]
    db = sqlite3.connect(path)
    pending = db.execute("SELECT COUNT(*) FROM tasks WHERE state IN ('PENDING','STARTED')").fetchone()[0]
    rows = db.execute(
        "SELECT t.created_at, m.sent_at FROM messages m JOIN tasks t ON t.id = m.task_id").fetchall()
    return pending, [(parse(a), parse(b)) for a, b in rows]


def rows_postgres(url: str):
    def q(sql):
        return subprocess.run(["psql", url, "-Atc", sql], check=True, capture_output=True,
                              text=True).stdout.strip()
    pending = int(q("SELECT COUNT(*) FROM tasks WHERE state IN ('PENDING','STARTED')"))
    out = q("SELECT t.created_at, m.sent_at FROM messages m JOIN tasks t ON t.id = m.task_id")
    rows = []
    for line in out.splitlines():
        a, b = line.split("|")
        rows.append((parse(a), parse(b)))
    return pending, rows


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


backend, url = sys.argv[1], sys.argv[2]
pending, rows = (rows_sqlite if backend == "sqlite" else rows_postgres)(url)
lat = [(b - a).total_seconds() * 1000 for a, b in rows]
if rows:
    span = (max(b for _, b in rows) - min(a for a, _ in rows)).total_seconds()
else:
    span = 0
stored_per_s = len(rows) / span if span > 0 else 0
print(f"pending={pending} stored={len(rows)} stored_per_s={stored_per_s:.0f} "
      f"lat_p50_ms={pct(lat, 50):.2f} lat_p99_ms={pct(lat, 99):.2f}")
