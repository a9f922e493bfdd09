#!/usr/bin/env python3
"""Render bench/run.sh results: a plain table on stdout and the markdown page.

Called by bench/run.sh with the run's facts in the environment; reads the raw
rows from $OUT_TSV and writes $OUT_MD. A hand-written "## Targets" section in
an existing $OUT_MD is carried over, so re-running keeps the engineer's text.
"""
import csv
import os
import re

env = os.environ
PHASES = ["backup1", "backup2", "restore", "stdin"]
PHASE_NAMES = {
    "backup1": "first backup (tree)",
    "backup2": "unchanged re-run (tree)",
    "restore": "restore latest (tree)",
    "stdin": "stdin stream backup",
}
TARGETS_PLACEHOLDER = "<!-- targets -->"

with open(env["OUT_TSV"], newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
tools = env["TOOLS"].split()
by = {(r["tool"], r["phase"]): r for r in rows}


def mb(n):
    return f"{int(n) / 1e6:,.1f}"


def table_rows():
    out = []
    for t in tools:
        for p in PHASES:
            r = by.get((t, p))
            if not r:
                continue
            repo = mb(r["repo_bytes"]) if p != "restore" else "-"
            growth = mb(r["repo_growth_bytes"]) if p != "restore" else "-"
            out.append([
                t, PHASE_NAMES[p], mb(r["input_bytes"]), f"{float(r['wall_s']):.2f}",
                r["mb_per_s"], r["cpu_s"], f"{int(r['maxrss_kib']) / 1024:,.0f}",
                repo, growth,
            ])
    return out


HEAD = ["Tool", "Phase", "Input (MB)", "Wall (s)", "Throughput (MB/s)",
        "CPU user+sys (s)", "Peak RSS (MiB)", "Repo size after (MB)", "Repo growth (MB)"]


def ratio(a, b, phase):
    ra, rb = by.get((a, phase)), by.get((b, phase))
    if not ra or not rb or float(rb["mb_per_s"]) == 0:
        return "n/a"
    return f"{float(ra['mb_per_s']) / float(rb['mb_per_s']):.2f}x"


def size_ratio(a, b, phase, col):
    ra, rb = by.get((a, phase)), by.get((b, phase))
    if not ra or not rb or int(rb[col]) == 0:
        return "n/a"
    return f"{int(ra[col]) / int(rb[col]):.2f}x"


def md_table(head, body, text_cols=2):
    """Markdown table; the first text_cols columns left-, the rest right-aligned."""
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < text_cols else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def text_table(head, body, text_cols=2):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = "  ".join("{:<%d}" % w if i < text_cols else "{:>%d}" % w
                    for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*r) for r in body])


body = table_rows()
ratio_head = ["Phase", "lifeline/restic", "lifeline/rustic"]
ratio_body = [[PHASE_NAMES[p] + " throughput", ratio("lifeline", "restic", p),
               ratio("lifeline", "rustic", p)] for p in PHASES]
ratio_body.append(["repo size after tree backups (smaller is better)",
                   size_ratio("lifeline", "restic", "backup2", "repo_bytes"),
                   size_ratio("lifeline", "rustic", "backup2", "repo_bytes")])
ratio_body.append(["repo growth from stream (smaller is better)",
                   size_ratio("lifeline", "restic", "stdin", "repo_growth_bytes"),
                   size_ratio("lifeline", "rustic", "stdin", "repo_growth_bytes")])

print(text_table(HEAD, body))
if "lifeline" in tools:
    print()
    print(text_table(ratio_head, ratio_body, text_cols=1))

# Keep a hand-filled Targets section from the previous page, if any.
targets = TARGETS_PLACEHOLDER
if os.path.exists(env["OUT_MD"]):
    old = open(env["OUT_MD"]).read()
    m = re.search(r"^## Targets\n(.*?)(?=^## |\Z)", old, re.S | re.M)
    if m and m.group(1).strip():
        targets = m.group(1).strip()

src_desc = "the Linux 6.1 kernel source tree"
if env["DATASET"] == "small":
    src_desc = f"the `{env['SMALL_SUBDIR']}` subtree of {src_desc} (smoke run)"
big_mib = int(env["BIG_MIB"])

md = f"""# Benchmarks: lifeline beside restic and rustic

Each tool backs up the same data into its own fresh repository on local disk,
in one run of one script, with its default settings (default compression:
restic and rustic use zstd `auto`), a password from a file, and its own empty
cache directory. Lower wall time and higher throughput are better.

Last run: {env['run_date']} (dataset: `{env['DATASET']}`, tools: {', '.join(tools)}).

## Reproduce

```sh
bench/setup.sh && bench/run.sh
```

`bench/setup.sh` installs restic, GNU time and the kernel source from Debian and
builds rustic from crates.io; `bench/run.sh` extracts the dataset (once, into
the git-ignored `bench/work/`), runs every tool, writes this page and the raw
numbers in `bench/results/latest.tsv`. `TOOLS="restic rustic" bench/run.sh`
picks tools; `DATASET=small bench/run.sh` is a quick smoke run that writes to
`bench/work/smoke/` instead.

## Machine

- CPU: {env['cpu_model']}, {env['n_cpu']} cores (`nproc`)
- Memory: {env['mem_total']} (`free -h`)
- Kernel: {env['kernel']}
- Storage: repositories, restores and data on the same local disk
- Load average (1/5/15 min) at start: {env['load_start']}, at end: {env['load_end']}
  (the machine is shared; other work may perturb the figures)
- Page cache: {env['cache_note']}

Versions:

{env['versions'].rstrip()}

## Dataset

- **Tree**: {src_desc}, from Debian's `linux-source-6.1` package
  (`/usr/src/linux-source-6.1.tar.xz`, extracted once):
  {int(env['src_bytes']):,} bytes in {int(env['src_files']):,} files,
  {int(env['src_links']):,} symlinks and {int(env['src_dirs']):,} directories.
- **Stream**: `big.img`, {int(env['big_bytes']):,} bytes ({big_mib} MiB), fed on
  standard input to mimic a database image: four equal segments S1 S2 S1 S3,
  each alternating 3 MiB of kernel source text (a name-sorted tar of the tree,
  compressible) with 1 MiB of seeded pseudo-random bytes (incompressible), so
  about 75% compressible text, 25% random, and the third quarter duplicates the
  first. Built by `bench/dataset.sh`, deterministic for a given tarball.

## Phases

1. **first backup (tree)**: `backup` of the tree into the empty repository.
2. **unchanged re-run (tree)**: the same `backup` again, nothing changed.
3. **restore latest (tree)**: restore of the latest snapshot into an empty
   directory; the result is then compared with the source (`diff -r
   --no-dereference`) and the run fails if they differ.
4. **stdin stream backup**: `big.img` backed up from standard input
   (lifeline `backup --stdin --name big.img`, restic `backup --stdin
   --stdin-filename big.img`, rustic `backup - --stdin-filename big.img`).

Measured with `/usr/bin/time -f '%e %U %S %M'`: wall seconds, CPU seconds
(user + system), peak resident set size. Throughput is input bytes / wall
seconds (MB = 10^6 bytes); for the re-run and the restore the input is the
tree's size. Repository size is `du -sb` of the repository directory.

## Results

{md_table(HEAD, body)}

### Ratios

Throughput ratio above 1 means lifeline is faster; size ratio below 1 means
lifeline's repository is smaller. "n/a" when a tool was not part of the run.

{md_table(ratio_head, ratio_body, text_cols=1)}

## Targets

{targets}
"""
with open(env["OUT_MD"], "w") as f:
    f.write(md)
print(f"\nrun: wrote {env['OUT_MD']} and {env['OUT_TSV']}")
