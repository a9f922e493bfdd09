#!/usr/bin/env bash
# Benchmark lifeline beside restic and rustic on one dataset in one run.
#
#   bench/setup.sh && bench/run.sh
#
# Environment knobs:
#   TOOLS="lifeline restic rustic"   which tools to run, in this order
#   DATASET=full|small               full: whole kernel tree + 1 GiB stream;
#                                    small: $SMALL_SUBDIR + 64 MiB (smoke run)
#   SMALL_SUBDIR=drivers/net         subtree used by DATASET=small
#   BIG_MIB=1024|64                  size of the stdin stream (multiple of 16)
#   LIFELINE_BIN=target/release/lifeline
#   CACHE=cold|warm                  cold (default) drops the page cache before
#                                    every timed phase; warm never drops it
#   OUT_MD, OUT_TSV                  output files (defaults depend on DATASET)
#
# A full run writes docs/benchmarks.md and bench/results/latest.tsv. A small
# run writes under bench/work/smoke/ so a smoke test never clobbers the
# published numbers.
set -euo pipefail

bench="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$bench/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"   # cargo-installed rustic lives here

TOOLS="${TOOLS:-lifeline restic rustic}"
DATASET="${DATASET:-full}"
SMALL_SUBDIR="${SMALL_SUBDIR:-drivers/net}"
LIFELINE_BIN="${LIFELINE_BIN:-$root/target/release/lifeline}"
CACHE="${CACHE:-cold}"

case "$DATASET" in
  full)  BIG_MIB="${BIG_MIB:-1024}"
         OUT_MD="${OUT_MD:-$root/docs/benchmarks.md}"
         OUT_TSV="${OUT_TSV:-$bench/results/latest.tsv}" ;;
  small) BIG_MIB="${BIG_MIB:-64}"
         OUT_MD="${OUT_MD:-$bench/work/smoke/benchmarks.md}"
         OUT_TSV="${OUT_TSV:-$bench/work/smoke/latest.tsv}" ;;
  *) echo "run: DATASET must be full or small, got '$DATASET'" >&2; exit 2 ;;
esac

die() { echo "run: ERROR: $*" >&2; exit 1; }

# --- preflight: every requested tool must exist before we spend any time ------
[ -x /usr/bin/time ] || die "/usr/bin/time missing; run bench/setup.sh"
for t in $TOOLS; do
  case "$t" in
    lifeline) [ -x "$LIFELINE_BIN" ] || die "lifeline binary not found at $LIFELINE_BIN
  (build it with 'cargo build --release -p lifeline', set LIFELINE_BIN, or
   run without it: TOOLS=\"restic rustic\" bench/run.sh)" ;;
    restic|rustic) command -v "$t" >/dev/null 2>&1 \
      || die "$t not found on PATH; run bench/setup.sh" ;;
    *) die "unknown tool '$t' (known: lifeline restic rustic)" ;;
  esac
done

# --- dataset -----------------------------------------------------------------
mapfile -t ds < <("$bench/dataset.sh" "$BIG_MIB")
tree="${ds[0]}"; big="${ds[1]}"
if [ "$DATASET" = small ]; then src="$tree/$SMALL_SUBDIR"; else src="$tree"; fi
[ -d "$src" ] || die "dataset directory $src missing"
src_bytes=$(du -sb --apparent-size "$src" | cut -f1)
src_files=$(find "$src" -type f | wc -l)
src_links=$(find "$src" -type l | wc -l)
src_dirs=$(find "$src" -type d | wc -l)
big_bytes=$(stat -c %s "$big")

# --- scratch area: fresh repositories, caches and configs for every run --------
work="$bench/work/run"
rm -rf "$work"
mkdir -p "$work" "$(dirname "$OUT_TSV")" "$(dirname "$OUT_MD")"
pwfile="$work/password"
printf 'lifeline-bench-password\n' > "$pwfile"
chmod 600 "$pwfile"

# --- page cache policy (bench/cache.sh) -----------------------------------------
# shellcheck source=bench/cache.sh
source "$bench/cache.sh"
cache_policy run "$src" "$big"

# --- per-tool command adapters --------------------------------------------------
# Each sets the array CMD to the tool's command line for one operation. All
# tools use their default compression and read the password from $pwfile.
set_cmd() {  # op tool repo [dir]
  local op="$1" tool="$2" repo="$3" dir="${4:-}"
  case "$tool:$op" in
    lifeline:init)    CMD=("$LIFELINE_BIN" init --repo "$repo") ;;
    lifeline:backup)  CMD=("$LIFELINE_BIN" backup --repo "$repo" "$dir") ;;
    lifeline:restore) CMD=("$LIFELINE_BIN" restore --repo "$repo" latest --target "$dir") ;;
    lifeline:stdin)   CMD=("$LIFELINE_BIN" backup --repo "$repo" --stdin --name big.img) ;;
    restic:init)      CMD=(restic -r "$repo" --password-file "$pwfile" init) ;;
    restic:backup)    CMD=(restic -r "$repo" --password-file "$pwfile" backup "$dir") ;;
    restic:restore)   CMD=(restic -r "$repo" --password-file "$pwfile" restore latest --target "$dir") ;;
    restic:stdin)     CMD=(restic -r "$repo" --password-file "$pwfile" backup --stdin --stdin-filename big.img) ;;
    rustic:init)      CMD=(rustic -r "$repo" --password-file "$pwfile" --no-progress init) ;;
    rustic:backup)    CMD=(rustic -r "$repo" --password-file "$pwfile" --no-progress backup "$dir") ;;
    rustic:restore)   CMD=(rustic -r "$repo" --password-file "$pwfile" --no-progress restore latest "$dir") ;;
    rustic:stdin)     CMD=(rustic -r "$repo" --password-file "$pwfile" --no-progress backup - --stdin-filename big.img) ;;
  esac
}
version_of() {
  local v=""
  case "$1" in
    lifeline) v=$("$LIFELINE_BIN" --version 2>/dev/null | head -n1) || v="" ;;
    restic)   v=$(restic version | head -n1) ;;
    rustic)   v=$(rustic --version | head -n1) ;;
  esac
  echo "${v:-$1 (version not reported)}"
}

# Run one command under GNU time. Each tool gets its own cache/config home so
# caches start empty and no user profile (e.g. ~/.config/rustic) leaks in; the
# tools keep their default cache behaviour inside it. Output goes to a
# per-phase log; on failure show its tail and stop the whole run.
#   run_timed TOOL PHASE STDIN_FILE CMD...   -> sets wall user sys rss_kib
run_timed() {
  local tool="$1" phase="$2" input="$3"; shift 3
  local log="$work/$tool/$phase.log" tf="$work/$tool/$phase.time"
  if ! XDG_CACHE_HOME="$work/$tool/cache" XDG_CONFIG_HOME="$work/$tool/config" \
      LIFELINE_PASSWORD_FILE="$pwfile" \
      /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" < "$input" > "$log" 2>&1; then
    echo "run: '$tool $phase' failed: $*" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  # GNU time may prepend a 'Command exited...' line; the last line is ours.
  read -r wall user sys rss_kib < <(tail -n1 "$tf")
}

repo_size() { du -sb "$1" | cut -f1; }

tsv_rows="$work/rows.tsv"
: > "$tsv_rows"
record() {  # tool phase input_bytes repo_bytes repo_growth
  local cpu mbps
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
  mbps=$(awk -v b="$3" -v w="$wall" 'BEGIN{printf "%.1f", (w>0 ? b/1e6/w : 0)}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$DATASET" "$1" "$2" "$3" "$wall" "$user" "$sys" "$cpu" "$rss_kib" "$mbps" "$4" "$5" \
    >> "$tsv_rows"
  printf 'run: %-8s %-8s %8ss %8s MB/s  cpu %8ss  rss %6d MiB\n' \
    "$1" "$2" "$wall" "$mbps" "$cpu" $(( rss_kib / 1024 )) >&2
}

# Restored data must equal the source, byte for byte, including symlinks and
# empty directories. restic-style tools restore /a/b to TARGET/a/b.
verify_restore() {  # tool target
  local got="$2$src"
  [ -d "$got" ] || die "$1 restore: expected $got to exist"
  if ! diff -r -q --no-dereference "$src" "$got" > "$work/$1/verify.diff" 2>&1; then
    head -n 20 "$work/$1/verify.diff" >&2
    die "$1 restore differs from the source (see $work/$1/verify.diff)"
  fi
  echo "run: $1 restore verified identical to source" >&2
}

# --- the benchmark ---------------------------------------------------------------
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"   # shared machine: record noise
echo "run: dataset=$DATASET src=$src ($src_bytes bytes, $src_files files) stream=$big ($big_bytes bytes) cache=$CACHE" >&2
for tool in $TOOLS; do
  repo="$work/$tool/repo" target="$work/$tool/restore"
  mkdir -p "$work/$tool/cache" "$work/$tool/config"

  set_cmd init "$tool" "$repo"
  run_timed "$tool" init /dev/null "${CMD[@]}"
  # An exit status of 0 is not enough (e.g. a stub binary): demand a repo.
  [ -d "$repo" ] && [ -n "$(ls -A "$repo")" ] \
    || die "$tool init exited 0 but created no repository at $repo (log: $work/$tool/init.log)"
  size0=$(repo_size "$repo")

  drop_caches
  set_cmd backup "$tool" "$repo" "$src"
  run_timed "$tool" backup1 /dev/null "${CMD[@]}"
  size1=$(repo_size "$repo")
  record "$tool" backup1 "$src_bytes" "$size1" $(( size1 - size0 ))

  drop_caches
  run_timed "$tool" backup2 /dev/null "${CMD[@]}"   # same command again
  size2=$(repo_size "$repo")
  record "$tool" backup2 "$src_bytes" "$size2" $(( size2 - size1 ))

  mkdir -p "$target"
  drop_caches
  set_cmd restore "$tool" "$repo" "$target"
  run_timed "$tool" restore /dev/null "${CMD[@]}"
  record "$tool" restore "$src_bytes" "$size2" 0
  verify_restore "$tool" "$target"
  rm -rf "$target"   # free the disk before the next phase

  drop_caches
  set_cmd stdin "$tool" "$repo"
  run_timed "$tool" stdin "$big" "${CMD[@]}"
  size3=$(repo_size "$repo")
  record "$tool" stdin "$big_bytes" "$size3" $(( size3 - size2 ))

  rm -rf "$work/$tool/cache"   # keep logs and repo; caches are just bulk
done

# --- raw results ---------------------------------------------------------------
{
  printf 'dataset\ttool\tphase\tinput_bytes\twall_s\tuser_s\tsys_s\tcpu_s\tmaxrss_kib\tmb_per_s\trepo_bytes\trepo_growth_bytes\n'
  cat "$tsv_rows"
} > "$OUT_TSV"

# --- report --------------------------------------------------------------------
versions=""
for t in $TOOLS; do versions+="- $t: \`$(version_of "$t")\`"$'\n'; done
mem_total=$(free -h | awk '/^Mem:/{print $2}')
cpu_model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)

export OUT_MD OUT_TSV DATASET TOOLS src_bytes src_files src_links src_dirs \
  big_bytes BIG_MIB SMALL_SUBDIR cache_note versions mem_total cpu_model
export n_cpu="$(nproc)" kernel="$(uname -r)" run_date="$(date -u '+%Y-%m-%d %H:%M UTC')"
export load_start load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$bench/report.py"
