#!/usr/bin/env python3
"""Render bench/pg.sh results: a plain table on stdout and the markdown page $OUT_MD.

Called by bench/pg.sh with the run's facts in the environment; reads the rows from $OUT_TSV. A
hand-written "### Reading" section in an existing $OUT_MD is carried over (with the date of the run
it was written for), so re-running keeps the engineer's text until it is rewritten.
"""
import csv
import os
import re

env = os.environ
rows = list(csv.DictReader(open(env["OUT_TSV"], newline=""), delimiter="\t"))
by = {(r["tool"], r["step"]): r for r in rows}

STEPS = [
    ("full1", "1. full backup"),
    ("full2", "2. second full backup, database unchanged"),
    ("full-stream", "2. second full backup, streamed by pg_basebackup (context)"),
    ("incr", "2. incremental backup, unchanged"),
    ("diff", "2. differential backup, unchanged (context)"),
    ("incr-1pct", "2b. incremental backup after 1% of rows changed"),
    ("wal-push-mean", "3. WAL push per 16 MiB segment: mean"),
    ("wal-push-p50", "3. WAL push per 16 MiB segment: p50"),
    ("wal-push-p95", "3. WAL push per 16 MiB segment: p95"),
    ("pitr", "4. PITR restore until promoted"),
]
NAMES = dict(STEPS)
TOOLS = ["lifeline", "pgbackrest"]
LABEL = {"lifeline": "lifeline", "pgbackrest": "pgBackRest"}


def mb(b):
    return f"{int(b) / 1e6:,.1f}"


def is_wal(step):
    return step.startswith("wal-push")


def seconds(r):
    w = float(r["wall_s"])
    return f"{w * 1000:.1f} ms" if is_wal(r["step"]) else f"{w:.2f}"


def ratio(step, col="wall_s"):
    a, b = by.get(("lifeline", step)), by.get(("pgbackrest", step))
    if not a or not b or float(b[col]) == 0:
        return "-"
    return f"{float(a[col]) / float(b[col]):.2f}x"


HEAD = ["Tool", "Step", "Seconds", "MB/s", "Repo: backups (MB)", "Repo: WAL archive (MB)",
        "Added (MB)", "CPU user+sys (s)", "Peak RSS (MiB)", "lifeline/pgBackRest: time"]
body = []
for step, name in STEPS:
    for tool in TOOLS:
        r = by.get((tool, step))
        if not r:
            continue
        wal = is_wal(step)
        cpu = float(r["user_s"]) + float(r["sys_s"])
        body.append([
            LABEL[tool], name, seconds(r), r["mb_per_s"],
            "-" if wal or step == "pitr" else mb(r["repo_bytes"]),
            mb(r["wal_archive_bytes"]) if step != "pitr" and not step.endswith(("p50", "p95")) else "-",
            "-" if wal or step == "pitr" else mb(r["added_bytes"]),
            (f"{cpu * 1000:.0f} ms" if wal else f"{cpu:.2f}") if not step.endswith(("p50", "p95")) else "-",
            f"{int(r['maxrss_kib']) / 1024:,.0f}" if not step.endswith(("p50", "p95")) else "-",
            ratio(step) if tool == "lifeline" else "",
        ])


def md_table(head, body, text_cols=2):
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i < text_cols else "---:" for i in range(len(head))) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in body])


def text_table(head, body, text_cols=2):
    w = [max(len(str(x)) for x in c) for c in zip(head, *body)]
    f = "  ".join(("{:<%d}" if i < text_cols else "{:>%d}") % n for i, n in enumerate(w))
    return "\n".join([f.format(*head), f.format(*("-" * n for n in w))] + [f.format(*r) for r in body])


def detail(tool, step):
    r = by.get((tool, step))
    return r["detail"] if r else "-"


# Summary ratios: time and repository size, lifeline over pgBackRest.
def size_ratio(step):
    a, b = by.get(("lifeline", step)), by.get(("pgbackrest", step))
    if not a or not b or int(b["repo_bytes"]) == 0:
        return "-"
    return f"{int(a['repo_bytes']) / int(b['repo_bytes']):.2f}x"


def wal_ratio():
    a, b = by.get(("lifeline", "wal-push-mean")), by.get(("pgbackrest", "wal-push-mean"))
    if not a or not b:
        return "-"
    return f"{int(a['wal_archive_bytes']) / int(b['wal_archive_bytes']):.2f}x"


RHEAD = ["Comparison (lifeline / pgBackRest)", "Ratio"]
rbody = [
    ["full backup: time", ratio("full1")],
    ["full backup: repository size after it (backups only)", size_ratio("full1")],
    ["second full, unchanged: time", ratio("full2")],
    ["second full, unchanged: data added", (lambda a, b: f"{int(a) / int(b):.4f}x" if int(b) else "-")(
        by["lifeline", "full2"]["added_bytes"], by["pgbackrest", "full2"]["added_bytes"])
        if ("lifeline", "full2") in by and ("pgbackrest", "full2") in by else "-"],
    ["incremental, unchanged: time", ratio("incr")],
    ["incremental after 1% of rows changed: time", ratio("incr-1pct")],
    ["WAL push: mean time per segment", ratio("wal-push-mean")],
    ["WAL push: p50 time per segment", ratio("wal-push-p50")],
    ["WAL push: p95 time per segment", ratio("wal-push-p95")],
    ["WAL archive size for the same segments", wal_ratio()],
    ["PITR restore until promoted: time", ratio("pitr")],
]

print(text_table(HEAD, body))
print()
print(text_table(RHEAD, rbody, text_cols=1))

# Issue 16's targets: p50 under 20 ms, and 600 segments a minute sustained.
target_ms, target_rate = 20.0, 600
ll_mean = by.get(("lifeline", "wal-push-mean"))
ll_p50 = by.get(("lifeline", "wal-push-p50"))
if ll_mean and ll_p50:
    m, p = float(ll_mean["wall_s"]) * 1000, float(ll_p50["wall_s"]) * 1000
    rate = 60_000 / m
    status = "met" if p < target_ms and rate >= target_rate else "not met"
    wal_target = (f"lifeline WAL push: p50 {p:.1f} ms per segment (target: under {target_ms:.0f} ms), "
                  f"mean {m:.1f} ms, so {rate:,.0f} segments/min back to back (target: {target_rate}): **{status}**.")
else:
    wal_target = "lifeline WAL push: not measured."

# The hand-written reading, kept from the previous page.
reading = "<!-- reading: written by hand after a run; bench/pg_report.py keeps it -->\n_Not written yet for this run._"
if os.path.exists(env["OUT_MD"]):
    old = open(env["OUT_MD"]).read()
    m = re.search(r"^### Reading\n(.*?)(?=^##|\Z)", old, re.S | re.M)
    if m and m.group(1).strip():
        reading = m.group(1).strip()

exp = env["expected"].split()
lat = env["latest"].split()
small = env["DATASET"] == "small"
page = f"""# Benchmarks: PostgreSQL

Companion to [benchmarks.md](benchmarks.md) (files and streams, lifeline beside restic and rustic).
This page is written by `bench/pg.sh`; only its "Reading" section is written by hand and kept when
the script rewrites the page.

## PostgreSQL: lifeline vs pgBackRest

lifeline's PostgreSQL commands beside pgBackRest on the same PostgreSQL 15 cluster, in one run of one
script, each tool into its own repository on the same local disk. Lower times are better.

Last run: {env['run_date']} (dataset: `{env['DATASET']}`{' — a smoke run, not a benchmark' if small else ''}; the
whole script took {env['total_minutes']} min).

### Reproduce

```sh
scripts/postgres.sh install                 # PostgreSQL 15 and pgBackRest from Debian (root)
cargo build --release -p lifeline
bench/pg.sh                                 # root: the servers and both tools run as the postgres user
```

`bench/pg.sh` works in `bench/work/pg` (git-ignored, recreated each run), stops its servers on exit,
writes this page and the raw numbers in `bench/results/pg.tsv`, and leaves its logs in
`bench/work/pg/logs`. The full run takes about 8 minutes on this machine; `DATASET=small bench/pg.sh` is
a smoke run of a minute or two that writes under `bench/work/smoke/` instead.

### Machine

- CPU: {env['cpu_model']}, {env['n_cpu']} cores (`nproc`), shared with other work; memory: {env['mem_total']}; kernel {env['kernel']}
- Storage: the clusters, both repositories and the restores on the same local disk
- Load average (1/5/15 min) at start: {env['load_start']}, at end: {env['load_end']}
- Page cache: {env['cache_note']} (backups and restores; for WAL push see step 3)
- Versions: {env['v_lifeline']}; `{env['v_pgbackrest']}` and `{env['v_postgres']}` (Debian bookworm packages)

### Setup

- **Cluster**: `scripts/postgres.sh start 15` (initdb with data checksums, `wal_level = replica`,
  `archive_mode = on`, `max_wal_size = 4GB`, otherwise defaults: `shared_buffers = 128MB`,
  `wal_compression = off`, 16 MiB segments).
- **Data**, in one database `bench`: `pgbench -i -s {env['SCALE']}` ({int(env['n_accounts']):,} rows in
  `pgbench_accounts`) plus a table `vectors (id int PRIMARY KEY, embedding real[])` of
  {int(env['n_vectors']):,} rows, each {env['DIM']} deterministic pseudo-random floats in [-1, 1)
  (`setseed(0.42)` then `random()`, {int(env['vec_bytes']) / 1e6:,.0f} MB with its index). PostgreSQL 15 here
  has no pgvector (Debian bookworm does not package it for 15), so `real[]` stands in for `vector({env['DIM']})`:
  the same 4-byte floats, as incompressible as real embeddings. Then `VACUUM (FREEZE, ANALYZE)` and a
  checkpoint, so that later reads never rewrite a page. The data directory without `pg_wal` holds
  {int(env['src_bytes']):,} bytes ({int(env['db_bytes']):,} in the databases); MB/s below is that size over the
  wall time (MB = 10^6 bytes).
- **Archiving**: one `archive_command` feeds both repositories, lifeline first:
  `lifeline --config CFG pg wal-push %p && pgbackrest --stanza=bench archive-push %p` (behind a test that
  the command runs in the benchmark's own data directory: the restored clusters inherit the setting and
  must not push a new timeline into the repositories). Each backup therefore also waits for the other
  tool's push of its last segment; lifeline's push comes first, which favours lifeline by one push
  (about the step-3 time) per backup.
- **lifeline**: a local repository, opened by a key file (`lifeline key add --new-key-file`), config
  `[repository] url = ".../repo"`, `key = {{ key_file = ".../key" }}`. Backups read the data directory
  on the host (`--mode files`: `pg_backup_start`/`pg_backup_stop`, two readers, one per core) into the
  repository (zstd level 3, content-defined chunks, deduplicated, AES-256-GCM); one more full backup
  streams it through `pg_basebackup -X none -c fast` (`--mode stream`) for context. WAL segments are
  single encrypted objects, zstd level 1; `pg wal-push` archives up to 16 more waiting segments ahead.
- **pgBackRest**: `repo1-path` on the same disk, `compress-type=zst`, `compress-level=3`, `process-max=2`,
  `start-fast=y`, `archive-check` left at its default (on), `repo1-retention-full=99` (nothing expires),
  no repository encryption (lifeline always encrypts). `archive-push` in its default synchronous mode.

### Steps

1. **Full backup**: `lifeline --config CFG pg backup --db postgresql://postgres@127.0.0.1:PORT/postgres`
   and `pgbackrest --stanza=bench backup --type=full`, each timed until the command returns (both wait
   until the WAL the backup needs is archived). Repository size is `du -sb`: for lifeline the repository
   without its `wal/` folder, for pgBackRest `backup/bench`; the WAL archives (`wal/`, `archive/bench`)
   are listed apart and hold the WAL archived since archiving was switched on.
2. **Second full backup of the unchanged database**: the same commands again. "Added" is lifeline's
   `data_added` (new data written to the repository after deduplication) and, for pgBackRest, the growth
   of `backup/bench` (a full backup always copies everything). Then lifeline's streamed full
   (`--mode stream`, context), both incrementals of the unchanged database (`--incremental`: lifeline
   reads only files whose size or times changed; pgBackRest `--type=incr`), and pgBackRest's
   `--type=diff` for context. **2b**: `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <=
   SCALE * 1000` (1% of the rows, one contiguous range) and `CHECKPOINT`, then both incrementals again.
   The backups run interleaved — pgBackRest full, lifeline full, pgBackRest full, lifeline full,
   lifeline stream, pgBackRest incr, lifeline incr, pgBackRest diff, (update) pgBackRest incr, lifeline
   incr — with the page cache dropped before each.
3. **WAL push**: {env['WAL_SEGS']} real 16 MiB segments from a second cluster kept busy with whole-table
   `UPDATE`s after checkpoints (full-page images), `VACUUM`, pgbench TPC-B and inserts of random
   `real[{env['DIM']}]` rows, kept in its `pg_wal` by `wal_keep_size` and pushed after it stopped, one process
   per segment as `archive_command` runs them, from its data directory: `lifeline --config CFG pg wal-push
   pg_wal/SEG` and `pgbackrest --stanza=walgen archive-push pg_wal/SEG`. Every segment waits with its
   `.ready` file, as after a burst, and is marked `.done` after both pushed it, as PostgreSQL does:
   lifeline's first call archives the next 16 ahead in parallel and later calls find their markers
   (pgBackRest runs synchronously). "segments/min back to back" is the segments over the sum of the
   calls' wall times: the rate an archiver calling without pause would reach. Each segment is read once before
   (untimed), as PostgreSQL has just written it when it archives it; the two tools alternate which goes
   first. Wall time per process (bash `$EPOCHREALTIME` around it), CPU and peak RSS from GNU time.
   MB/s is 16.78 MB over the time.
4. **PITR restore**: after the backups, pgbench TPC-B for {env['LOAD_A_SECS']} s (load A), the target time T, one second,
   pgbench for {env['LOAD_B_SECS']} s more and 1,000 more vectors (load B), `pg_switch_wal()` and a wait until it is
   archived; the primary is then stopped. lifeline: `lifeline --config CFG pg restore --pgdata DIR
   --target-time T --target-action promote --start --port P` (restores the files, starts the server,
   waits until it is promoted, polling every 250 ms; its `restore_command`, `pg wal-fetch`, fetches the
   next 8 segments ahead by default). pgBackRest: `pgbackrest --stanza=bench
   --pg1-path=DIR restore --type=time --target=T --target-action=promote`, then `pg_ctl start -w` and a
   poll of `pg_is_in_recovery()` every 250 ms until it is false (its `archive-get` is synchronous: the
   configuration sets no `archive-async`). Each restores its own latest backup
   (lifeline's incremental after the update, pgBackRest's incremental after it). Both restored clusters must hold exactly the rows at T:
   (accounts, history, vectors, sum(abalance), sum of hashtext(embedding::text)) =
   ({', '.join(exp)}), against ({', '.join(lat)}) at the end of load B; the run fails otherwise.
5. **Peak RSS**: GNU time's maximum resident set size of the timed command, which covers the processes it
   waited for: lifeline's includes `pg_basebackup` during a backup; pgBackRest's is its largest process
   (with `process-max=2` it runs helper processes); a restored server's processes are not included.

### Results

{md_table(HEAD, body)}

{wal_target}

{md_table(RHEAD, rbody, text_cols=1)}

Details per step (from `bench/results/pg.tsv`):

""" + "\n".join(
    f"- {LABEL[t]}, {NAMES[s].split('. ', 1)[1]}: {detail(t, s)}"
    for s, _ in STEPS if not s.endswith(("p50", "p95")) for t in TOOLS if (t, s) in by
) + f"""

### Reading

{reading}
"""
with open(env["OUT_MD"], "w") as f:
    f.write(page)
print(f"\npg: wrote {env['OUT_MD']} and {env['OUT_TSV']}")
