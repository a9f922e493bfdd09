#!/usr/bin/env bash
# Benchmark lifeline against an S3 store (a local 3-node Garage cluster), beside
# lifeline on local disk and restic against the same Garage, in one run.
#
#   bench/setup.sh && bench/s3.sh
#
# Phases: lifeline -> local disk (backup, unchanged re-run, restore),
#         lifeline -> Garage     (backup, unchanged re-run, restore),
#         restic   -> Garage     (backup, unchanged re-run, restore).
# Every restore is compared with the source (diff -r --no-dereference).
#
# Environment knobs:
#   DATASET=full|small        full: whole kernel tree; small: $SMALL_SUBDIR (smoke run)
#   SMALL_SUBDIR=drivers/net  subtree used by DATASET=small
#   LIFELINE_BIN=target/release/lifeline
#   CACHE=cold|warm           cold (default) drops the page cache before every
#                             timed phase; falls back to warm when not allowed
#   OUT_MD, OUT_TSV           outputs (defaults depend on DATASET)
#
# A full run writes docs/benchmarks-s3.md and bench/results/s3-latest.tsv; a
# small run writes under bench/work/smoke/ so a smoke run never clobbers them.
# (The results live in their own page because bench/report.py regenerates
# docs/benchmarks.md from scratch, keeping only its "## Targets" section.)
set -euo pipefail

bench="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$bench/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"   # cargo-installed garage lives here

DATASET="${DATASET:-full}"
SMALL_SUBDIR="${SMALL_SUBDIR:-drivers/net}"
LIFELINE_BIN="${LIFELINE_BIN:-$root/target/release/lifeline}"
CACHE="${CACHE:-cold}"
case "$DATASET" in
  full)  OUT_MD="${OUT_MD:-$root/docs/benchmarks-s3.md}"
         OUT_TSV="${OUT_TSV:-$bench/results/s3-latest.tsv}" ;;
  small) OUT_MD="${OUT_MD:-$bench/work/smoke/benchmarks-s3.md}"
         OUT_TSV="${OUT_TSV:-$bench/work/smoke/s3-latest.tsv}" ;;
  *) echo "s3: DATASET must be full or small, got '$DATASET'" >&2; exit 2 ;;
esac

die() { echo "s3: ERROR: $*" >&2; exit 1; }

# --- preflight: fail before spending minutes on a missing tool ----------------
[ -x /usr/bin/time ] || die "/usr/bin/time missing; run bench/setup.sh"
[ -x "$LIFELINE_BIN" ] || die "lifeline binary not found at $LIFELINE_BIN (cargo build --release -p lifeline)"
command -v restic >/dev/null 2>&1 || die "restic not found on PATH; run bench/setup.sh"
command -v garage >/dev/null 2>&1 || die "garage not found on PATH or in ~/.cargo/bin (cargo install garage --locked)"
[ -x "$root/scripts/garage.sh" ] || die "scripts/garage.sh missing"

# --- dataset: only the tree is needed; 16 MiB is dataset.sh's smallest stream --
mapfile -t ds < <("$bench/dataset.sh" 16)
tree="${ds[0]}"
if [ "$DATASET" = small ]; then src="$tree/$SMALL_SUBDIR"; else src="$tree"; fi
[ -d "$src" ] || die "dataset directory $src missing"
src_bytes=$(du -sb --apparent-size "$src" | cut -f1)
src_files=$(find "$src" -type f | wc -l)
src_links=$(find "$src" -type l | wc -l)
src_dirs=$(find "$src" -type d | wc -l)

# --- scratch area (fresh every run) -----------------------------------------------
work="$bench/work/s3run"
gdir="$bench/work/garage"
rm -rf "$work"
mkdir -p "$work" "$(dirname "$OUT_TSV")" "$(dirname "$OUT_MD")"
pwfile="$work/password"
printf 'lifeline-bench-password\n' > "$pwfile"
chmod 600 "$pwfile"

# --- Garage: a fresh cluster per run, so old benchmark objects never skew it ---
# A cluster left running by an interrupted run would keep the ports and data.
if [ -f "$gdir/node1/garage.toml" ]; then "$root/scripts/garage.sh" stop "$gdir" || true; fi
rm -rf "$gdir"
stop_garage() { "$root/scripts/garage.sh" stop "$gdir" >/dev/null 2>&1 || true; }
trap stop_garage EXIT
"$root/scripts/garage.sh" start "$gdir" > /dev/null
# shellcheck disable=SC1091
source "$gdir/env"
export AWS_DEFAULT_REGION="$AWS_REGION"   # restic's minio client reads this one
s3_host="${AWS_ENDPOINT_URL#http://}"
suffix="$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')"
ll_s3="s3://$LIFELINE_TEST_BUCKET/bench-$suffix"
restic_s3="s3:http://$s3_host/$LIFELINE_TEST_BUCKET/bench-restic-$suffix"
# Path-style and the Garage region: restic would otherwise guess us-east-1.
restic_opts=(-o "s3.region=$AWS_REGION" -o s3.bucket-lookup=path)

# --- page cache policy (bench/cache.sh) -----------------------------------------
# shellcheck source=bench/cache.sh
source "$bench/cache.sh"
cache_policy s3 "$src"
# Dropping caches also empties Garage's cached data, so its reads are cold as well.

# --- timing ------------------------------------------------------------------------
# Each run gets its own cache/config home, so restic starts with an empty cache
# (it then keeps its default local metadata cache between phases).
#   run_timed NAME PHASE CMD...   -> sets wall user sys rss_kib
run_timed() {
  local name="$1" phase="$2"; shift 2
  mkdir -p "$work/$name"
  local log="$work/$name/$phase.log" tf="$work/$name/$phase.time"
  if ! XDG_CACHE_HOME="$work/$name/cache" XDG_CONFIG_HOME="$work/$name/config" \
      LIFELINE_PASSWORD_FILE="$pwfile" \
      /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" < /dev/null > "$log" 2>&1; then
    echo "s3: '$name $phase' failed: $*" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  # GNU time may prepend a 'Command exited...' line; the last line is ours.
  read -r wall user sys rss_kib < <(tail -n1 "$tf")
}

# S3 requests a phase made: clients talk only to node 1, whose log has one INFO
# line per request (a failed one adds an 'error' line, not counted). Explains
# phases that are bound by request latency rather than by CPU or bytes.
s3_requests() {  # repo-prefix -> count so far
  grep -F 'generic_server: 127.0.0.1' "$gdir/node1/log" | grep -v 'error' | grep -cF -- "$1" || true
}

rows="$work/rows.tsv"
: > "$rows"
record() {  # tool target phase s3_requests
  local cpu mbps
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
  mbps=$(awk -v b="$src_bytes" -v w="$wall" 'BEGIN{printf "%.1f", (w>0 ? b/1e6/w : 0)}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$DATASET" "$1" "$2" "$3" "$src_bytes" "$wall" "$user" "$sys" "$cpu" "$rss_kib" "$mbps" "$4" >> "$rows"
  printf 's3: %-8s %-6s %-8s %8ss %8s MB/s  cpu %8ss  rss %6d MiB  s3 requests %s\n' \
    "$1" "$2" "$3" "$wall" "$mbps" "$cpu" $(( rss_kib / 1024 )) "$4" >&2
}

# Both tools restore a source path /a/b to TARGET/a/b.
verify_restore() {  # name target
  local got="$2$src"
  [ -d "$got" ] || die "$1 restore: expected $got to exist"
  if ! diff -r -q --no-dereference "$src" "$got" > "$work/$1/verify.diff" 2>&1; then
    head -n 20 "$work/$1/verify.diff" >&2
    die "$1 restore differs from the source (see $work/$1/verify.diff)"
  fi
  echo "s3: $1 restore verified identical to source" >&2
}

# One tool against one target: init (untimed), backup, unchanged re-run, restore.
#   bench_one NAME TOOL TARGET REPO [S3_PREFIX]
bench_one() {
  local name="$1" tool="$2" target="$3" repo="$4" prefix="${5:-}" restore_dir="$work/$1/restore"
  local n0
  # cmd SUBCOMMAND ARGS... -> the tool's command line in CMD
  cmd() {
    if [ "$tool" = lifeline ]; then CMD=("$LIFELINE_BIN" "$1" --repo "$repo" "${@:2}")
    else CMD=(restic -r "$repo" --password-file "$pwfile" "${restic_opts[@]}" "$@"); fi
  }
  # timed PHASE: run CMD under time, then record it with its S3 request count
  timed() {
    n0=$([ -n "$prefix" ] && s3_requests "$prefix" || echo 0)
    run_timed "$name" "$1" "${CMD[@]}"
    record "$tool" "$target" "$1" \
      "$([ -n "$prefix" ] && echo $(( $(s3_requests "$prefix") - n0 )) || echo -)"
  }
  cmd init; run_timed "$name" init "${CMD[@]}"
  drop_caches; cmd backup "$src"; timed backup1
  drop_caches; timed backup2              # the same command again
  mkdir -p "$restore_dir"
  drop_caches; cmd restore latest --target "$restore_dir"; timed restore
  verify_restore "$name" "$restore_dir"
  rm -rf "$restore_dir" "$work/$name/cache"   # free the disk before the next tool
}

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"   # shared machine: record the noise
echo "s3: dataset=$DATASET src=$src ($src_bytes bytes, $src_files files) cache=$CACHE garage=$AWS_ENDPOINT_URL" >&2
bench_one lifeline-local lifeline local  "$work/lifeline-local/repo"
bench_one lifeline-s3    lifeline garage "$ll_s3"     "bench-$suffix"
bench_one restic-s3      restic   garage "$restic_s3" "bench-restic-$suffix"
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

{
  printf 'dataset\ttool\ttarget\tphase\tinput_bytes\twall_s\tuser_s\tsys_s\tcpu_s\tmaxrss_kib\tmb_per_s\ts3_requests\n'
  cat "$rows"
} > "$OUT_TSV"

# --- report ----------------------------------------------------------------------------
export OUT_MD OUT_TSV DATASET SMALL_SUBDIR src_bytes src_files src_links src_dirs cache_note
export load_start load_end n_cpu="$(nproc)" kernel="$(uname -r)"
export mem_total="$(free -h | awk '/^Mem:/{print $2}')"
export cpu_model="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
export run_date="$(date -u '+%Y-%m-%d %H:%M UTC')"
export v_lifeline="$("$LIFELINE_BIN" --version 2>/dev/null | head -n1)"
export v_restic="$(restic version | head -n1)"
export v_garage="$(garage --version 2>/dev/null | head -n1)"
export garage_db="$(awk -F'"' '/^db_engine/{print $2}' "$gdir/node1/garage.toml")"
python3 - <<'PY'
import csv, os
env = os.environ
rows = list(csv.DictReader(open(env["OUT_TSV"], newline=""), delimiter="\t"))
by = {(r["tool"], r["target"], r["phase"]): r for r in rows}
PHASES = ["backup1", "backup2", "restore"]
NAMES = {"backup1": "first backup", "backup2": "unchanged re-run", "restore": "restore latest"}
RUNS = [("lifeline", "local"), ("lifeline", "garage"), ("restic", "garage")]
HEAD = ["Tool", "Target", "Phase", "Wall (s)", "MB/s", "CPU user+sys (s)", "RSS (MiB)",
        "S3 requests"]

body = []
for tool, target in RUNS:
    for p in PHASES:
        r = by.get((tool, target, p))
        if r:
            body.append([tool, target, NAMES[p], f"{float(r['wall_s']):.2f}", r["mb_per_s"],
                         r["cpu_s"], f"{int(r['maxrss_kib']) / 1024:,.0f}",
                         f"{int(r['s3_requests']):,}" if r["s3_requests"].isdigit() else "-"])

def ratio(a, b, p, col):
    ra, rb = by.get(a + (p,)), by.get(b + (p,))
    if not ra or not rb or float(rb[col]) == 0:
        return "n/a"
    return f"{float(ra[col]) / float(rb[col]):.2f}x"

RHEAD = ["Phase", "lifeline/restic, both to Garage: throughput",
         "lifeline Garage/local: throughput", "lifeline Garage/local: wall time"]
rbody = [[NAMES[p],
          ratio(("lifeline", "garage"), ("restic", "garage"), p, "mb_per_s"),
          ratio(("lifeline", "garage"), ("lifeline", "local"), p, "mb_per_s"),
          ratio(("lifeline", "garage"), ("lifeline", "local"), p, "wall_s")]
         for p in PHASES]

def md(head, body, text_cols):
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i < text_cols else "---:" for i in range(len(head))) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in body])

def text(head, body, text_cols):
    w = [max(len(str(x)) for x in c) for c in zip(head, *body)]
    f = "  ".join(("{:<%d}" if i < text_cols else "{:>%d}") % n for i, n in enumerate(w))
    return "\n".join([f.format(*head), f.format(*("-" * n for n in w))] + [f.format(*r) for r in body])

print(text(HEAD, body, 3)); print(); print(text(RHEAD, rbody, 1))

src_desc = "the Linux 6.1 kernel source tree (Debian `linux-source-6.1`)"
if env["DATASET"] == "small":
    src_desc = f"the `{env['SMALL_SUBDIR']}` subtree of {src_desc} (smoke run)"
page = f"""# Benchmarks: lifeline on S3 (Garage)

Companion to [benchmarks.md](benchmarks.md) (local disk, lifeline beside restic
and rustic). This page measures what an S3 target costs: lifeline to local disk,
lifeline to a Garage cluster, and restic to the same Garage cluster, all in one
run of one script on the same data. Lower wall time and higher throughput are
better.

Last run: {env['run_date']} (dataset: `{env['DATASET']}`).

## S3 (Garage)

### Reproduce

```sh
bench/setup.sh && bench/s3.sh
```

`bench/s3.sh` starts its own Garage cluster in `bench/work/garage` with
`scripts/garage.sh` (and stops it on exit), runs every phase, checks every
restore against the source, prints a table, and writes this page and the raw
numbers in `bench/results/s3-latest.tsv`. `DATASET=small bench/s3.sh` is a quick
smoke run that writes under `bench/work/smoke/` instead.

### Machine

- CPU: {env['cpu_model']}, {env['n_cpu']} cores (`nproc`); memory: {env['mem_total']} (`free -h`);
  kernel {env['kernel']}
- Load average (1/5/15 min) at start: {env['load_start']}, at end: {env['load_end']}
  (the machine is shared; other work may perturb the figures)
- Page cache: {env['cache_note']}
- Versions: `{env['v_lifeline']}`, `{env['v_restic']}`, `{env['v_garage']}`

### Garage layout

- 3 Garage nodes on this same machine, in 2 zones (`dc1`: nodes 1 and 2,
  `dc2`: node 3), replication factor 3: every object is stored on all three
  nodes, and a write is acknowledged once 2 of 3 have it.
- Everything is on loopback (127.0.0.1): the clients talk to node 1's S3 port,
  node 1 forwards to the others over Garage RPC. **Network cost is loopback
  only** — no real latency or bandwidth limit — but every byte is still
  signed, sent over HTTP, hashed and written three times to the same disk,
  and the three servers share the 2 cores with the client being measured.
- Test-cluster settings from `scripts/garage.sh`: metadata engine
  `{env['garage_db']}`, `metadata_fsync = false`, `data_fsync = false`;
  Garage defaults otherwise (1 MiB blocks, zstd block compression, which
  gains nothing on encrypted data).
- lifeline: `--repo s3://lifeline-test/bench-<random>` with `AWS_ENDPOINT_URL`,
  `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (path-style).
  restic: `-r s3:http://127.0.0.1:PORT/lifeline-test/bench-restic-<random>
  -o s3.region=garage -o s3.bucket-lookup=path`, otherwise default settings
  (including its default 5 concurrent connections and its local metadata cache,
  empty at the start of the run).

### Dataset and phases

- Data: {src_desc}: {int(env['src_bytes']):,} bytes in {int(env['src_files']):,} files,
  {int(env['src_links']):,} symlinks and {int(env['src_dirs']):,} directories.
- Phases, per tool and target, each into a fresh repository: `init` (not
  timed), **first backup**, **unchanged re-run** (the same backup again),
  **restore latest** into an empty directory, then `diff -r --no-dereference`
  against the source (the run fails on any difference).
- Measured with `/usr/bin/time -f '%e %U %S %M'` on the client process only
  (Garage's own CPU is not included): wall seconds, CPU user + system seconds,
  peak RSS. MB/s is the tree's size / wall seconds (MB = 10^6 bytes), also for
  the re-run and the restore.
- S3 requests: the requests for the repository's prefix in node 1's request
  log during the phase (the clients only talk to node 1). Few large requests
  are bound by bandwidth and CPU; many small ones by per-request latency,
  which loopback understates compared with a real network.

### Results

{md(HEAD, body, 3)}

### Ratios

Throughput ratios above 1 mean the first-named is faster; the wall-time ratio
is how many times longer the Garage run took than the local one.

{md(RHEAD, rbody, 1)}
"""
open(env["OUT_MD"], "w").write(page)
print(f"\ns3: wrote {env['OUT_MD']} and {env['OUT_TSV']}")
PY
