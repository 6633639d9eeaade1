"""How to evaluate Sigma rules over a run's events: a matcher compiled from pySigma's parsed
rules (what `bubble.analysis.signatures` does) against pySigma's SQLite backend (rules turned
into SQL, events loaded into an in-memory table, one query per rule).

    .venv/bin/pip install pysigma-backend-sqlite   # bench only
    .venv/bin/python bench/sigma_eval.py [N ...]

Both paths get the same records from `taxonomy.records` and must find the same hits; the
figures are wall-clock medians of 3, interleaved. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import sys
import time

from bubble.analysis import signatures, taxonomy


def events(n: int) -> list[dict]:
    """A plausible mix: execs, denied and allowed file calls, connects, privileged calls."""
    out = [{"seq": 1, "type": "process.spawn", "pid": 1, "exe": "/bin/sh", "argv": ["sh"],
            "action": "launcher.start", "user": "nobody"}]  # fmt: skip
    paths = ["/tmp/a", "/etc/cron.d/x", "/home/u/.bashrc", "/var/log/syslog", "/etc/passwd",
             "/srv/data/file", "/root/.ssh/authorized_keys", "/usr/lib/x.so"]  # fmt: skip
    calls = ["openat", "unlinkat", "fchmodat", "renameat", "utimensat"]
    for i in range(2, n + 1):
        k = i % 10
        if k == 0:
            exe = "/tmp/p" if i % 20 else "/usr/bin/curl"
            argv = ["curl", "-o", "/tmp/x", "http://h/"]
            e = {"type": "process.spawn", "pid": i, "exe": exe, "argv": argv, "ppid": 1}
        elif k == 1:
            port = 4444 if i % 7 == 0 else 80
            e = {"type": "net.connect", "pid": 2, "category": "net", "syscall": "connect",
                 "peer": "127.0.0.1", "port": port, "family_name": "AF_INET"}  # fmt: skip
        elif k == 2:
            e = {"type": "policy.alert", "pid": 2, "category": "sys", "syscall": "ptrace"}
        else:
            e = {"type": "policy.alert" if i % 3 else "fs.write", "pid": 2, "category": "fs",
                 "syscall": calls[i % len(calls)], "path": paths[i % len(paths)],
                 "path2": "/etc/passwd", "mode": 0o4777 if i % 11 == 0 else 0o644,
                 "flags": "O_WRONLY|O_CREAT|O_TRUNC"}  # fmt: skip
        out.append(e | {"seq": i})
    return out


def matcher(rs: signatures.RuleSet, evs: list[dict]) -> dict[str, list[int]]:
    hits = signatures.evaluate(rs, taxonomy.records(evs, {}, {}))
    return {h["id"]: h["events"] for h in hits}


def sql_setup() -> tuple[list[tuple[str, str, str]], list[str]]:
    """(rule id, source, SQL) for every shipped rule, and the table's columns."""
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    queries = []
    for path in sorted(signatures.RULES_DIR.glob("*.yml")):
        coll = SigmaCollection.from_yaml(path.read_text())
        rule = coll.rules[0]
        (sql,) = sqliteBackend().convert(coll)
        queries.append((str(rule.name), taxonomy.source_of(rule.logsource) or "", sql))
    cols = sorted({f for m in taxonomy.FIELDS.values() for f in m} | set(taxonomy.COMMON))
    return queries, cols


def sqlite(queries, cols, evs: list[dict]) -> dict[str, list[int]]:
    db = sqlite3.connect(":memory:")
    db.create_function("REGEXP", 2, lambda p, v: v is not None and re.search(p, str(v)) is not None)
    names = ", ".join(f'"{c}"' for c in cols)
    db.execute(f"CREATE TABLE logs (seq INTEGER, source TEXT, {names})")
    rows = []
    for seq, source, rec in taxonomy.records(evs, {}, {}):
        named = {s: rec.get(k) for s, k in (taxonomy.FIELDS[source] | taxonomy.COMMON).items()}
        rows.append([seq, source, *(_sql(named.get(c)) for c in cols)])
    marks = ", ".join("?" * (len(cols) + 2))
    db.executemany(f"INSERT INTO logs VALUES ({marks})", rows)
    out: dict[str, list[int]] = {}
    for rule_id, source, sql in queries:
        scoped = sql.replace(
            "SELECT * FROM logs",
            "SELECT DISTINCT seq FROM (SELECT * FROM logs WHERE source = ?)",
            1,
        )
        seqs = [r[0] for r in db.execute(scoped + " ORDER BY seq", (source,))]
        if seqs:
            out[rule_id] = seqs
    db.close()
    return out


def _sql(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def timed(fn, *args):
    t = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t, result


def main(sizes: list[int]) -> None:
    t_load, rs = timed(signatures.load)
    t_sql, (queries, cols) = timed(sql_setup)
    print(
        f"set-up: matcher (parse + compile) {t_load * 1000:.0f} ms; "
        f"SQLite backend (parse + convert) {t_sql * 1000:.0f} ms"
    )
    print("events   matcher ms   sqlite ms   ratio")
    for n in sizes:
        evs = events(n)
        a, b = [], []
        for _ in range(3):
            ta, ra = timed(matcher, rs, evs)
            tb, rb = timed(sqlite, queries, cols, evs)
            a.append(ta)
            b.append(tb)
        assert ra == rb, "the two evaluations must agree"
        ma, mb = statistics.median(a) * 1000, statistics.median(b) * 1000
        print(f"{n:>7}  {ma:>10.1f}  {mb:>10.1f}   {mb / ma:5.1f}x")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000, 100000])
