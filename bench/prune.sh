#!/usr/bin/env bash
# Retention at scale: forget + prune of a repository with 1,000 snapshots and over a million chunks,
# on local disk and on a 3-node Garage cluster, and the size of what is left beside a fresh copy of
# the retained snapshots.
#
#   bench/prune.sh                  # SNAPSHOTS=1000 by default; SNAPSHOTS=100 for a smoke run
#
# Per store: build the history (crates/lifeline-repo/examples/synthetic_history.rs: hourly backups of
# a document store, 32 files of 25 × 256-byte chunks changed each hour), then time
#   lifeline forget --keep-daily 30 --keep-weekly 12 --keep-monthly 12 --keep-yearly 7
#   lifeline prune --grace 0s                      (marks, repacks, merges indexes and deletes in one run)
# with /usr/bin/time (wall, CPU, peak RSS); on Garage, count the S3 requests prune made from node 1's
# metrics. Then (locally) `lifeline copy` the retained snapshots into an empty repository: the size a
# fresh backup of what is retained takes, to compare with the pruned repository.
#
# Writes docs/benchmarks-prune.md and bench/results/prune.tsv (a smoke run: under bench/work/).
set -euo pipefail

bench="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$bench/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
SNAPSHOTS="${SNAPSHOTS:-1000}"
work="$bench/work/prune"
if [ "$SNAPSHOTS" = 1000 ]; then
  OUT_MD="${OUT_MD:-$root/docs/benchmarks-prune.md}"
  OUT_TSV="${OUT_TSV:-$bench/results/prune.tsv}"
else
  OUT_MD="${OUT_MD:-$work/benchmarks-prune.md}"
  OUT_TSV="${OUT_TSV:-$work/prune.tsv}"
fi
die() { echo "prune.sh: ERROR: $*" >&2; exit 1; }
log() { echo "prune.sh: $*" >&2; }
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install time)"
command -v garage >/dev/null 2>&1 || die "garage not found (cargo install garage --locked)"

log "building (release)"
(cd "$root" && cargo build --release -q -p lifeline && cargo build --release -q -p lifeline-repo --example synthetic_history)
lifeline="$root/target/release/lifeline"
generate="$root/target/release/examples/synthetic_history"

rm -rf "$work"
mkdir -p "$work" "$(dirname "$OUT_TSV")"
echo "bench-password" > "$work/password"
export LIFELINE_PASSWORD_FILE="$work/password"
policy=(--keep-daily 30 --keep-weekly 12 --keep-monthly 12 --keep-yearly 7)

# The "Maximum resident set size" and "Elapsed" lines of /usr/bin/time -v, as "wall_s rss_mib cpu_s".
measure() {
  local out="$1"; shift
  /usr/bin/time -v "$@" > "$out.stdout" 2> "$out.time" || { cat "$out.time" >&2; die "$* failed"; }
  python3 - "$out.time" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def field(name):
    return re.search(re.escape(name) + r": (.*)", t).group(1).strip()
parts = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))
rss = int(field("Maximum resident set size (kbytes)")) / 1024
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
print(f"{wall:.2f} {rss:.0f} {cpu:.2f}")
EOF
}

# Bytes of a repository's packs and index files (what prune manages).
repo_bytes() { "$lifeline" --repo "$1" --json stats | python3 -c 'import json,sys; o=json.load(sys.stdin)["repository"]; print(o["pack_bytes"] + o["index_bytes"])'; }

# S3 requests node 1 has answered so far, by endpoint, as "Endpoint=N ..." (lifeline talks to node 1).
s3_requests() {
  curl -s "http://127.0.0.1:$admin_port/metrics" | python3 -c '
import re, sys
counts = {}
for line in sys.stdin:
    m = re.match(r"api_s3_request_counter\{api_endpoint=\"(\w+)\"\} (\d+)", line)
    if m:
        counts[m.group(1)] = int(m.group(2))
print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))'
}

# requests_between "BEFORE" "AFTER" -> "total (Endpoint N, ...)"
requests_between() {
  python3 - "$1" "$2" <<'EOF'
import sys
parse = lambda s: dict(kv.split("=") for kv in s.split())
a, b = parse(sys.argv[1]), parse(sys.argv[2])
d = {k: int(v) - int(a.get(k, 0)) for k, v in b.items() if int(v) - int(a.get(k, 0)) > 0}
print(f"{sum(d.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) + ")")
EOF
}

run_store() {
  local name="$1" url="$2" fresh="$3"
  log "$name: generating $SNAPSHOTS snapshots"
  local gen; gen=$(measure "$work/$name-generate" "$generate" "$url" "$SNAPSHOTS" "$work/password")
  local chunks; chunks=$(awk '{print $3}' "$work/$name-generate.stdout")
  local before; before=$(repo_bytes "$url")
  log "$name: forget"
  local forget; forget=$(measure "$work/$name-forget" "$lifeline" --repo "$url" forget "${policy[@]}")
  local kept; kept=$("$lifeline" --repo "$url" --json snapshots | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  local req_before=""; [ -n "${admin_port:-}" ] && req_before=$(s3_requests)
  log "$name: prune"
  local prune; prune=$(measure "$work/$name-prune" "$lifeline" --repo "$url" --json prune --grace 0s)
  local requests="-"; [ -n "${admin_port:-}" ] && requests=$(requests_between "$req_before" "$(s3_requests)")
  local after; after=$(repo_bytes "$url")
  # The per-pack threshold leaves up to --max-unused of garbage in a pack; a second run with 5%
  # shows the size a tighter setting reaches.
  "$lifeline" --repo "$url" prune --grace 0s --max-unused 5 > /dev/null
  local after5; after5=$(repo_bytes "$url")
  log "$name: check --read-data"
  "$lifeline" --repo "$url" check --read-data > "$work/$name-check.txt"
  # The fresh copy is made once, from the local repository: the retained snapshots hold the same
  # blobs on either store, so its size stands for both (and copy reads S3 packs slowly: see
  # docs/benchmarks-prune.md).
  if [ -n "$fresh" ]; then
    log "$name: a fresh copy of the $kept retained snapshots"
    "$lifeline" --repo "$fresh" init > /dev/null
    "$lifeline" --repo "$url" copy --to "$fresh" --to-password-file "$work/password" > /dev/null
    fresh_bytes=$(repo_bytes "$fresh")
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$SNAPSHOTS" "$chunks" "$kept" \
    "$gen" "$forget" "$prune" "$before" "$after" "$after5" "$fresh_bytes" "$requests" >> "$work/rows.tsv"
}

: > "$work/rows.tsv"
run_store local "$work/repo" "$work/fresh"

log "starting a Garage cluster"
garage_dir="$work/garage"
eval "$("$root/scripts/garage.sh" start "$garage_dir")"
trap '"$root/scripts/garage.sh" stop "$garage_dir" >/dev/null 2>&1 || true' EXIT
admin_port=$(awk '/\[admin\]/{f=1} f && /api_bind_addr/{gsub(/"/,""); n=split($3,a,":"); print a[n]; exit}' "$garage_dir/node1/garage.toml")
run_store garage "s3://$LIFELINE_TEST_BUCKET/prune-bench" ""

python3 - "$work/rows.tsv" "$OUT_TSV" "$OUT_MD" "$SNAPSHOTS" <<'EOF'
import datetime, os, platform, subprocess, sys
rows_path, tsv, md, snapshots = sys.argv[1:5]
header = ["store", "snapshots", "chunks", "kept", "generate_wall_s", "generate_rss_mib", "generate_cpu_s",
          "forget_wall_s", "forget_rss_mib", "forget_cpu_s", "prune_wall_s", "prune_rss_mib", "prune_cpu_s",
          "bytes_before", "bytes_after", "bytes_after_max_unused_5", "fresh_bytes", "prune_requests"]
rows = []
for line in open(rows_path):
    f = line.rstrip("\n").split("\t")
    rows.append([f[0], f[1], f[2], f[3], *f[4].split(), *f[5].split(), *f[6].split(), f[7], f[8], f[9], f[10], f[11]])
with open(tsv, "w") as out:
    out.write("\t".join(header) + "\n")
    for r in rows:
        out.write("\t".join(r) + "\n")
mib = lambda b: f"{int(b) / 2**20:.1f} MiB"
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = [
    "# Benchmark: forget + prune at scale",
    "",
    f"Measured {datetime.date.today()} by `bench/prune.sh` on {os.cpu_count()} cores ({cpu}), "
    f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, {platform.system()} {platform.release()}.",
    "",
    f"The history: {snapshots} hourly snapshots of a document store (64 × 64 directories, two files each, 32 files",
    "changed per hour) built by `crates/lifeline-repo/examples/synthetic_history.rs`, with 256-byte chunks so a",
    "million chunks fit in a few hundred megabytes: the index and tree load of a large repository. Each snapshot",
    "wrote its own packs and index file, as backups do. Policy: `forget --keep-daily 30 --keep-weekly 12",
    "--keep-monthly 12 --keep-yearly 7`, then `prune --grace 0s` (mark, repack, merge indexes, delete in one run).",
    "`fresh` is a repository into which `lifeline copy` put the retained snapshots: what a fresh backup of them takes.",
    "",
    "| store | chunks | kept | forget | prune wall | prune CPU | prune peak RSS | packs + index before | after | fresh | after ÷ fresh | with `--max-unused 5` ÷ fresh | prune requests |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for r in rows:
    d = dict(zip(header, r))
    ratio = int(d["bytes_after"]) / int(d["fresh_bytes"])
    ratio5 = int(d["bytes_after_max_unused_5"]) / int(d["fresh_bytes"])
    lines.append(f"| {d['store']} | {int(d['chunks']):,} | {d['kept']} | {d['forget_wall_s']} s | {d['prune_wall_s']} s | "
                 f"{d['prune_cpu_s']} s | {d['prune_rss_mib']} MiB | {mib(d['bytes_before'])} | {mib(d['bytes_after'])} | "
                 f"{mib(d['fresh_bytes'])} | {ratio:.3f} | {ratio5:.3f} | {d['prune_requests']} |")
lines += ["", "Targets: prune under 60 s locally with peak RSS under 300 MB; after ÷ fresh at most 1.05.",
          "Rerun: `bench/prune.sh` (about 10 minutes); raw numbers in `bench/results/prune.tsv`.", "",
          "## What the runs found", "",
          "- The tree walk read trees in the order it found them; on S3, where the reader fetches whole packs and",
          "  keeps six, that meant a pack per tree: 3,198 GETs to prune 100 snapshots. It now reads each level's trees",
          "  grouped by pack (387 GETs for the same run).",
          "- Peak RSS was 377 MiB (heap 210 MB in valgrind's massif): merged index files were built from copies of",
          "  every entry and held plain, compressed and sealed at once; entry vectors kept their growth slack; a",
          "  second million-entry set tracked which pack counts a blob; four threads held whole packs while",
          "  repacking. Each fixed: 257 MiB, and 7 s instead of 8.7 s. On Garage the S3 client's buffers add the rest.",
          "- `--max-unused` is judged per pack (default 10%), so a pack up to 10% garbage stays; here that leaves",
          "  2.2% more than a fresh copy, and `--max-unused 5` 0.8%.",
          "- A `lifeline copy` of the 32 retained snapshots from Garage to Garage was stopped after 14 minutes and",
          "  48,000 GETs: copy reads blobs file by file in parallel and the six-pack cache thrashes on large repacked",
          "  packs. The fresh copy is therefore made locally; copy reading packs in pack order is the fix, to come",
          "  with the plan's copies.", ""]
open(md, "w").write("\n".join(lines))
print("\n".join(lines))
EOF
