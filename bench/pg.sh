#!/usr/bin/env bash
# Benchmark lifeline's PostgreSQL commands beside pgBackRest on the same PostgreSQL 15 cluster, in one run.
#
#   scripts/postgres.sh install && cargo build --release -p lifeline && bench/pg.sh
#
# Steps (each tool into its own repository on the same local disk):
#   1. full base backup            lifeline pg backup --mode files | pgbackrest backup --type=full
#   2. the same again, unchanged   lifeline pg backup --mode files, --mode stream (context), --incremental
#                                                               | pgbackrest backup --type=full, then incr and diff
#   2b. incremental after 1% of the rows changed (UPDATE of one contiguous 1% of pgbench_accounts)
#                                  lifeline pg backup --incremental | pgbackrest backup --type=incr
#   3. WAL push, one process per segment over WAL_SEGS real 16 MiB segments, as archive_command runs it
#      on a backlog (every segment .ready, as after a burst; each marked .done once both tools pushed it)
#                                  lifeline pg wal-push (archives ahead) | pgbackrest archive-push (synchronous)
#   4. point-in-time recovery of the latest backup to a time between two pgbench loads, until the server
#      is promoted; the restored row counts must equal those recorded at that time
#                                  lifeline pg restore --start  | pgbackrest restore + pg_ctl start
# Peak RSS of every timed command comes from GNU time.
#
# Environment knobs:
#   DATASET=full|small   full: pgbench -i -s 100 + 100,000 vectors, 500 WAL segments;
#                        small: a smoke run (scale 2, 2,000 vectors, 10 segments) writing under bench/work/smoke/
#   SCALE, VEC_ROWS, WAL_SEGS, LOAD_A_SECS, LOAD_B_SECS   override the dataset's sizes
#   LIFELINE_BIN=target/release/lifeline
#   CACHE=cold|warm      cold (default) drops the page cache before every timed backup and restore
#   KEEP=1               keep repositories and data directories in the work folder afterwards
#   OUT_MD, OUT_TSV      outputs (full: docs/benchmarks-pg.md and bench/results/pg.tsv)
#
# Everything lives in bench/work/pg (bench/work/pg-smoke for DATASET=small; git-ignored), recreated on
# every run; servers are stopped on exit.
# Needs root: servers and tools run as the `postgres` OS user (runuser), and cold cache needs
# /proc/sys/vm/drop_caches.
set -euo pipefail

bench="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$bench/.." && pwd)"

DATASET="${DATASET:-full}"
case "$DATASET" in
full)
	SCALE="${SCALE:-100}" VEC_ROWS="${VEC_ROWS:-100000}" WAL_SEGS="${WAL_SEGS:-500}"
	LOAD_A_SECS="${LOAD_A_SECS:-30}" LOAD_B_SECS="${LOAD_B_SECS:-5}"
	OUT_MD="${OUT_MD:-$root/docs/benchmarks-pg.md}"
	OUT_TSV="${OUT_TSV:-$bench/results/pg.tsv}"
	;;
small)
	SCALE="${SCALE:-2}" VEC_ROWS="${VEC_ROWS:-2000}" WAL_SEGS="${WAL_SEGS:-10}"
	LOAD_A_SECS="${LOAD_A_SECS:-3}" LOAD_B_SECS="${LOAD_B_SECS:-2}"
	OUT_MD="${OUT_MD:-$bench/work/smoke/benchmarks-pg.md}"
	OUT_TSV="${OUT_TSV:-$bench/work/smoke/pg.tsv}"
	;;
*) echo "pg: DATASET must be full or small, got '$DATASET'" >&2; exit 2 ;;
esac
LIFELINE_BIN="${LIFELINE_BIN:-$root/target/release/lifeline}"
CACHE="${CACHE:-cold}"
KEEP="${KEEP:-0}"
PG_BIN=/usr/lib/postgresql/15/bin
DIM=384          # vector dimension
SEG=16777216     # WAL segment size (initdb's default)

log() { echo "pg: $*" >&2; }
die() { echo "pg: ERROR: $*" >&2; exit 1; }

# --- preflight -------------------------------------------------------------------
((EUID == 0)) || die "run as root: the servers and tools run as the postgres user (runuser)"
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install time)"
[ -x "$PG_BIN/postgres" ] && command -v pgbackrest >/dev/null 2>&1 \
	|| die "PostgreSQL 15 or pgBackRest missing: run scripts/postgres.sh install"
[ -x "$LIFELINE_BIN" ] || die "lifeline binary not found at $LIFELINE_BIN (cargo build --release -p lifeline)"
id postgres >/dev/null 2>&1 || die "no postgres OS user"

work="$bench/work/pg"
[ "$DATASET" = full ] || work="$bench/work/pg-smoke"   # a smoke run keeps the full run's logs
main="$work/main" walgen="$work/walgen" logs="$work/logs"
ll_dir="$work/lifeline" br_dir="$work/pgbackrest"
rl_dir="$work/restore-lifeline" rb_dir="$work/restore-pgbackrest"

# as_pg CMD...: run as the postgres user, from / (or $PG_CWD), keeping the environment.
as_pg() { (cd "${PG_CWD:-/}" && runuser -u postgres -- "$@"); }

# Stop every server this script may have started (also those of an interrupted earlier run).
stop_servers() {
	local d
	for d in "$main" "$walgen" "$rl_dir" "$rb_dir"; do
		if [ -f "$d/data/postmaster.pid" ]; then
			as_pg "$PG_BIN/pg_ctl" stop -D "$d/data" -m fast -w -t 60 >/dev/null 2>&1 \
				|| as_pg "$PG_BIN/pg_ctl" stop -D "$d/data" -m immediate >/dev/null 2>&1 || true
		fi
	done
}
cleanup() {
	local rc=$?
	stop_servers
	# Bulk goes unless KEEP=1; after a failure only the WAL generator (8 GiB) goes, for a look at the rest.
	if [ "$KEEP" != 1 ] && [ -d "$work" ]; then
		rm -rf "$walgen"
		((rc != 0)) || rm -rf "$rl_dir" "$rb_dir" "$main" "$ll_dir/repo" "$br_dir/repo"
	fi
	((rc == 0)) || log "failed (exit $rc); logs in $logs"
}
stop_servers
rm -rf "$work"
mkdir -p "$work/bin" "$logs" "$ll_dir" "$br_dir"/{repo,log,lock,spool} "$rl_dir" "$rb_dir" \
	"$(dirname "$OUT_TSV")" "$(dirname "$OUT_MD")"
trap cleanup EXIT
trap 'exit 130' INT TERM
# The postgres user must reach the binary and everything under $work.
install -m 755 "$LIFELINE_BIN" "$work/bin/lifeline"
LL="$work/bin/lifeline"
# Which lifeline this is: the binary's build time and hash, and the source tree's state right now
# (target/release may be rebuilt by others while the run goes on; the copy above is what runs).
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$root" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || commit+=" with uncommitted changes to crates/"
v_lifeline="$("$LL" --version | head -n1), binary built $(date -u -r "$LIFELINE_BIN" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$LL" | cut -c1-12); source tree at the start of the run: $commit"
chown -R postgres: "$work"
as_pg test -x "$LL" || die "the postgres user cannot run $LL (are the folders above $work open to others?)"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b - a}'; }
bytes_of() { du -sb "$1" 2>/dev/null | cut -f1; }
# The data directory without pg_wal: what a physical backup copies.
data_bytes() { echo $(($(bytes_of "$1") - $(bytes_of "$1/pg_wal"))); }

# psql as postgres on the server at port $1 (database $DB, default bench); extra args follow.
q() {
	local port=$1; shift
	as_pg "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -d "${DB:-bench}" "$@"
}

# run_timed NAME CMD...: run CMD as postgres under GNU time; stdout in $logs/NAME.out, stderr in .log.
#   -> sets wall user sys rss_kib
run_timed() {
	local name=$1; shift
	local tf="$logs/$name.time"
	if ! as_pg /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$logs/$name.out" 2>"$logs/$name.log"; then
		log "'$name' failed: $*"
		tail -n 20 "$logs/$name.out" "$logs/$name.log" >&2
		exit 1
	fi
	read -r wall user sys rss_kib < <(tail -n1 "$tf")
}

rows="$work/rows.tsv"
: >"$rows"
# record TOOL STEP WALL USER SYS RSS_KIB INPUT_BYTES REPO_BYTES WAL_BYTES ADDED_BYTES DETAIL
record() {
	local mbps
	mbps=$(awk -v b="$7" -v w="$3" 'BEGIN{printf "%.1f", (w > 0 && b > 0 ? b / 1e6 / w : 0)}')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$1" "$2" "$3" "$4" "$5" "$6" "$7" "$mbps" "$8" "$9" "${10}" "${11}" >>"$rows"
	log "$(printf '%-10s %-14s %8ss %8s MB/s  rss %5d MiB  %s' "$1" "$2" "$3" "$mbps" $(($6 / 1024)) "${11}")"
}

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
t_run=$(now)

# --- the cluster and its data ----------------------------------------------------------
# Archiving is on from the start (archive_mode needs a restart) but discards WAL while the data loads;
# the real archive_command is set once the data is in.
log "dataset=$DATASET: pgbench scale $SCALE, $VEC_ROWS vectors of $DIM reals, $WAL_SEGS WAL segments; cache=$CACHE"
mkdir -p "$main"; chown postgres: "$main"
port=$(ARCHIVE_COMMAND=/bin/true "$root/scripts/postgres.sh" start 15 "$main" "max_wal_size = 4GB" 2>"$logs/main-start.log")
url="postgresql://postgres@127.0.0.1:$port/postgres"
DB=postgres q "$port" -c "CREATE DATABASE bench"
t0=$(now)
as_pg "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -i -s "$SCALE" -q bench >"$logs/pgbench-init.log" 2>&1
# Deterministic pseudo-random embeddings: one seeded random() stream in one session, so every run
# (and both tools) sees the same bytes. The `WHERE i > 0` ties the inner query to the row, so it is
# evaluated per row rather than once.
q "$port" >"$logs/vectors.log" 2>&1 <<SQL
CREATE TABLE vectors (id int PRIMARY KEY, embedding real[] NOT NULL);
SELECT setseed(0.42);
INSERT INTO vectors
  SELECT i, ARRAY(SELECT (random() * 2 - 1)::real FROM generate_series(1, $DIM) WHERE i > 0)
  FROM generate_series(1, $VEC_ROWS) i;
SQL
# Frozen and analyzed, so reading it later never rewrites a page: "unchanged" stays byte-identical.
q "$port" -c "VACUUM (FREEZE, ANALYZE)" -c "CHECKPOINT"
log "data loaded in $(secs "$t0" "$(now)") s"
db_bytes=$(q "$port" -c "SELECT sum(pg_database_size(datname))::bigint FROM pg_database")
src_bytes=$(data_bytes "$main/data")
read -r n_accounts n_vectors vec_bytes < <(q "$port" -F ' ' -c \
	"SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM vectors), pg_total_relation_size('vectors')")

# --- repositories ------------------------------------------------------------------------
cfg="$ll_dir/config.toml"
printf 'lifeline-bench-password\n' >"$ll_dir/password"
chmod 600 "$ll_dir/password"; chown postgres: "$ll_dir/password"
as_pg "$LL" init --repo "$ll_dir/repo" --password-file "$ll_dir/password" >"$logs/lifeline-init.log" 2>&1
as_pg "$LL" --repo "$ll_dir/repo" --password-file "$ll_dir/password" key add --new-key-file "$ll_dir/key" \
	>>"$logs/lifeline-init.log" 2>&1
cat >"$cfg" <<EOF
[repository]
url = "$ll_dir/repo"
key = { key_file = "$ll_dir/key" }
EOF

br_conf="$br_dir/pgbackrest.conf"
walgen_port=$(free_port)
cat >"$br_conf" <<EOF
[global]
repo1-path=$br_dir/repo
repo1-retention-full=99
compress-type=zst
compress-level=3
process-max=2
start-fast=y
log-path=$br_dir/log
lock-path=$br_dir/lock
spool-path=$br_dir/spool

[bench]
pg1-path=$main/data
pg1-port=$port
pg1-socket-path=$main

[walgen]
pg1-path=$walgen/data
pg1-port=$walgen_port
pg1-socket-path=$walgen
EOF
chown -R postgres: "$ll_dir" "$br_dir"
BR=(pgbackrest "--config=$br_conf")

# Both tools archive every segment, lifeline first. Only the benchmark's own data directory archives:
# the restored clusters inherit this setting and must not push a new timeline into the repositories.
archive_cmd="test \"\$(pwd -P)\" = \"$main/data\" || exit 0; $LL --config $cfg pg wal-push %p && pgbackrest --config=$br_conf --stanza=bench archive-push %p"
q "$port" -v cmd="$archive_cmd" >/dev/null <<'SQL'
ALTER SYSTEM SET archive_command = :'cmd';
SELECT pg_reload_conf();
SQL
as_pg "${BR[@]}" --stanza=bench stanza-create >"$logs/pgbackrest-stanza.log" 2>&1
# check: switches WAL and waits until pgBackRest has it (so lifeline has it too).
as_pg "${BR[@]}" --stanza=bench check >>"$logs/pgbackrest-stanza.log" 2>&1 \
	|| { tail "$logs/pgbackrest-stanza.log" >&2; die "pgbackrest check failed"; }

# shellcheck source=bench/cache.sh
source "$bench/cache.sh"
cache_policy pg "$main/data"

ll_sizes() { # -> backup part, WAL part of the lifeline repository (bytes)
	local total wal
	total=$(bytes_of "$ll_dir/repo"); wal=$(bytes_of "$ll_dir/repo/wal" || echo 0)
	echo "$((total - ${wal:-0})) ${wal:-0}"
}
br_sizes() { echo "$(bytes_of "$br_dir/repo/backup/bench") $(bytes_of "$br_dir/repo/archive/bench")"; }

# --- steps 1 and 2: base backups -----------------------------------------------------------
log "source: $src_bytes bytes in the data directory without pg_wal ($db_bytes in databases)"
read -r ll_prev _ < <(ll_sizes)
read -r br_prev _ < <(br_sizes)
ll_backup() { # STEP ARGS...
	local step=$1; shift
	set -- "$step" "$@"
	drop_caches
	run_timed "lifeline-$1" "$LL" --config "$cfg" --json pg backup --db "$url" "${@:2}"
	added=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data_added"])' "$logs/lifeline-$1.out")
	read -r size wal < <(ll_sizes)
	record lifeline "$1" "$wall" "$user" "$sys" "$rss_kib" "$src_bytes" "$size" "$wal" "$added" \
		"repo grew $((size - ll_prev)) bytes; lifeline reports data_added $added"
	ll_prev=$size
}
br_backup() { # STEP TYPE (full incr diff)
	drop_caches
	run_timed "pgbackrest-$1" "${BR[@]}" --stanza=bench backup --type="$2"
	read -r size wal < <(br_sizes)
	record pgbackrest "$1" "$wall" "$user" "$sys" "$rss_kib" "$src_bytes" "$size" "$wal" "$((size - br_prev))" \
		"backup/ grew $((size - br_prev)) bytes"
	br_prev=$size
}
# Interleaved, so that each tool's latest backup (restored in step 4) is close to the other's: the
# WAL each recovery replays differs only by the few segments of the backups in between.
br_backup full1 full
ll_backup full1 --mode files
br_backup full2 full
ll_backup full2 --mode files
ll_backup full-stream --mode stream
br_backup incr incr
ll_backup incr --mode files --incremental
br_backup diff diff
# 1% of the rows, contiguous (as a day's new and updated rows of one range would be), then CHECKPOINT
# so the changed pages are on disk for both tools.
q "$port" -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $((SCALE * 1000))" -c "CHECKPOINT"
br_backup incr-1pct incr
ll_backup incr-1pct --mode files --incremental
as_pg "${BR[@]}" --stanza=bench info >"$logs/pgbackrest-info.log" 2>&1 || true
as_pg "$LL" --config "$cfg" pg status >"$logs/lifeline-status.log" 2>&1 || true

# --- step 4, part 1: WAL after the backups, and the recovery target between two loads -----------
# Load A (pgbench TPC-B), then the target time T, then load B (more TPC-B and 1,000 more vectors):
# a recovery to T must hold A's rows and none of B's.
log "pgbench load A (${LOAD_A_SECS}s), target time, load B (${LOAD_B_SECS}s)"
as_pg "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -c 2 -j 2 -T "$LOAD_A_SECS" -n bench >"$logs/pgbench-load-a.log" 2>&1
counts_sql="SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history),
  (SELECT count(*) FROM vectors), (SELECT sum(abalance) FROM pgbench_accounts),
  (SELECT sum(hashtext(embedding::text)) FROM vectors)"
expected=$(q "$port" -F ' ' -c "$counts_sql")
target=$(q "$port" -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
sleep 1
as_pg "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -c 2 -j 2 -T "$LOAD_B_SECS" -n bench >"$logs/pgbench-load-b.log" 2>&1
q "$port" -c "INSERT INTO vectors SELECT i, ARRAY(SELECT (random() * 2 - 1)::real FROM generate_series(1, $DIM) WHERE i > 0)
  FROM generate_series($VEC_ROWS + 1, $VEC_ROWS + 1000) i"
latest=$(q "$port" -F ' ' -c "$counts_sql")
last_seg=$(q "$port" -c "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 600); do
	archived=$(q "$port" -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
	[[ "$archived" < "$last_seg" ]] || break
	sleep 0.5
done
[[ "$archived" < "$last_seg" ]] && die "segment $last_seg was not archived within 5 minutes"
failed=$(q "$port" -c "SELECT failed_count FROM pg_stat_archiver")
((failed == 0)) || log "note: archive_command failed $failed time(s) (see $main/log)"
log "target $target: expected (accounts history vectors sum(abalance) vector-hash) = $expected; latest = $latest"
[ "$expected" != "$latest" ] || die "load B changed nothing: the recovery target would prove nothing"
"$root/scripts/postgres.sh" stop "$main"

# --- step 4, part 2: point-in-time recovery ---------------------------------------------------------
# verify_restore NAME PORT: the restored cluster's counts must equal those at the target.
verify_restore() {
	local got
	got=$(q "$2" -F ' ' -c "$counts_sql")
	[ "$got" = "$expected" ] || die "$1: restored (accounts history vectors sum hash) = $got, expected $expected"
	[ "$(q "$2" -c 'SELECT pg_is_in_recovery()')" = f ] || die "$1: the restored server is not promoted"
	log "$1: restored cluster matches the target: $got"
}

drop_caches
p1=$(free_port)
run_timed lifeline-pitr "$LL" --config "$cfg" --json pg restore --pgdata "$rl_dir/data" \
	--target-time "$target" --target-action promote --start --port "$p1"
ll_parts=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
print("files %.2f s + start, replay and promotion %.2f s" % (r["restore_ms"] / 1000, r["recovery"]["seconds"]))' \
	"$logs/lifeline-pitr.out")
verify_restore lifeline "$p1"
replayed=$(grep -c 'restored log file' "$rl_dir/data.recovery.log" || true)
record lifeline pitr "$wall" "$user" "$sys" "$rss_kib" "$src_bytes" 0 0 0 \
	"$ll_parts; $replayed WAL files fetched from the archive; rows verified"
as_pg "$PG_BIN/pg_ctl" stop -D "$rl_dir/data" -m fast -w >/dev/null
rm -rf "$rl_dir/data"

drop_caches
p2=$(free_port)
install -d -m 700 -o postgres -g postgres "$rb_dir/data"
t0=$(now)
run_timed pgbackrest-restore "${BR[@]}" --stanza=bench --pg1-path="$rb_dir/data" restore \
	--type=time "--target=$target" --target-action=promote
br_user=$user br_sys=$sys br_rss=$rss_kib
t1=$(now)
as_pg "$PG_BIN/pg_ctl" start -w -t 3600 -D "$rb_dir/data" -l "$rb_dir/data.recovery.log" \
	-o "-p $p2 -c listen_addresses=127.0.0.1 -k $rb_dir" >"$logs/pgbackrest-pitr-start.log" 2>&1 \
	|| { tail "$rb_dir/data.recovery.log" >&2; die "the server restored by pgBackRest did not start"; }
# Poll as lifeline --start does (every 250 ms) until promoted.
until [ "$(q "$p2" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
	as_pg "$PG_BIN/pg_ctl" status -D "$rb_dir/data" >/dev/null 2>&1 \
		|| { tail "$rb_dir/data.recovery.log" >&2; die "the server restored by pgBackRest stopped"; }
	sleep 0.25
done
t2=$(now)
verify_restore pgbackrest "$p2"
record pgbackrest pitr "$(secs "$t0" "$t2")" "$br_user" "$br_sys" "$br_rss" "$src_bytes" 0 0 0 \
	"files (pgbackrest restore) $(secs "$t0" "$t1") s + pg_ctl start, replay and promotion $(secs "$t1" "$t2") s; $(grep -c 'restored log file' "$rb_dir/data.recovery.log" || true) WAL files fetched from the archive; rows verified"
grep -h "restore_command" "$rb_dir/data/postgresql.auto.conf" >"$logs/pgbackrest-restore-command.txt" || true
as_pg "$PG_BIN/pg_ctl" stop -D "$rb_dir/data" -m fast -w >/dev/null
rm -rf "$rb_dir/data"

# --- step 3: WAL push ---------------------------------------------------------------------------------
# Real segments from a second, busy cluster: TPC-B, whole-table UPDATEs with full-page images after
# checkpoints, VACUUM, and incompressible vector inserts. wal_keep_size keeps every segment in pg_wal.
log "generating $WAL_SEGS WAL segments"
t0=$(now)
mkdir -p "$walgen"; chown postgres: "$walgen"
keep_mb=$(((WAL_SEGS + 64) * 16))
# pgBackRest's stanza for it names this port; postgres.sh picks its own on creation, the last line wins.
"$root/scripts/postgres.sh" start 15 "$walgen" "wal_keep_size = ${keep_mb}MB" "port = $walgen_port" \
	>/dev/null 2>"$logs/walgen-start.log"
as_pg "${BR[@]}" --stanza=walgen stanza-create >"$logs/pgbackrest-walgen-stanza.log" 2>&1
DB=postgres q "$walgen_port" -c "CREATE DATABASE walgen"
as_pg "$PG_BIN/pgbench" -h 127.0.0.1 -p "$walgen_port" -i -s "$(((SCALE + 4) / 5))" -q walgen >"$logs/walgen-init.log" 2>&1
DB=walgen q "$walgen_port" -c "CREATE TABLE vec (id bigserial PRIMARY KEY, embedding real[] NOT NULL)"
full_segments() { # segments complete so far (the first one is number 1)
	DB=walgen q "$walgen_port" -c "SELECT ((pg_current_wal_lsn() - '0/0'::pg_lsn) / $SEG)::bigint - 1"
}
i=0
# A margin: checkpoints may already have recycled the oldest segments.
while (($(full_segments) < WAL_SEGS + 16)); do
	DB=walgen q "$walgen_port" -c "CHECKPOINT" \
		-c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 2 = $((i % 2))" \
		-c "VACUUM pgbench_accounts" \
		-c "INSERT INTO vec (embedding) SELECT ARRAY(SELECT (random() * 2 - 1)::real FROM generate_series(1, $DIM) WHERE i > 0) FROM generate_series(1, 20000) i"
	PGOPTIONS='-c synchronous_commit=off' as_pg "$PG_BIN/pgbench" -h 127.0.0.1 -p "$walgen_port" \
		-c 2 -j 2 -T 5 -n walgen >>"$logs/walgen-pgbench.log" 2>&1
	i=$((i + 1))
done
current=$(DB=walgen q "$walgen_port" -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
"$root/scripts/postgres.sh" stop "$walgen"
mapfile -t segs < <(cd "$walgen/data/pg_wal" && printf '%s\n' [0-9A-F]*[0-9A-F] | grep -E '^[0-9A-F]{24}$' \
	| sort | awk -v c="$current" '$0 < c' | head -n "$WAL_SEGS")
((${#segs[@]} == WAL_SEGS)) || die "only ${#segs[@]} complete WAL segments in $walgen/data/pg_wal, wanted $WAL_SEGS"
log "$WAL_SEGS segments (${segs[0]} .. ${segs[-1]}) in $(secs "$t0" "$(now)") s; pushing them"

# One process per segment, as archive_command runs them, from the data directory with %p =
# pg_wal/SEGMENT, on a backlog: every segment waits with its .ready file, as after a burst, and is
# marked .done (as PostgreSQL does) once both tools pushed it; lifeline archives ahead from the .ready
# files. Each segment is read once first (untimed): PostgreSQL has just written it, so it is in the
# page cache. The two tools alternate which goes first.
push_times="$work/wal-push.tsv"
for seg in "${segs[@]}"; do
	rm -f "$walgen/data/pg_wal/archive_status/$seg.done"
	install -m 600 -o postgres -g postgres /dev/null "$walgen/data/pg_wal/archive_status/$seg.ready"
done
PG_CWD="$walgen/data" as_pg bash -c '
	ll=$1 cfg=$2 conf=$3 out=$4 n=0; shift 4
	: >"$out"
	for seg in "$@"; do
		cat "pg_wal/$seg" >/dev/null
		for tool in $( ((n % 2)) && echo "pgbackrest lifeline" || echo "lifeline pgbackrest"); do
			if [ "$tool" = lifeline ]; then cmd=("$ll" --config "$cfg" pg wal-push "pg_wal/$seg")
			else cmd=(pgbackrest "--config=$conf" --stanza=walgen archive-push "pg_wal/$seg"); fi
			t0=$EPOCHREALTIME
			/usr/bin/time -f "%U %S %M" -o "$out.rusage" "${cmd[@]}" || { echo "$tool failed on $seg" >&2; exit 1; }
			t1=$EPOCHREALTIME
			printf "%s\t%s\t%s\t%s\n" "$tool" "$seg" "$t0 $t1" "$(tail -n1 "$out.rusage")" >>"$out"
		done
		mv "pg_wal/archive_status/$seg.ready" "pg_wal/archive_status/$seg.done"
		n=$((n + 1))
	done' _ "$LL" "$cfg" "$br_conf" "$push_times" "${segs[@]}" 2>"$logs/wal-push.log" \
	|| { tail "$logs/wal-push.log" >&2; die "WAL push failed"; }
walgen_sysid=$(as_pg "$PG_BIN/pg_controldata" -D "$walgen/data" | awk -F: '/Database system identifier/{gsub(/ /, "", $2); print $2}')
[ -e "$ll_dir/repo/wal/$walgen_sysid/00000001/${segs[0]}" ] || die "lifeline's WAL archive is not where expected: $ll_dir/repo/wal/$walgen_sysid/00000001/${segs[0]}"
ll_wal=$(bytes_of "$ll_dir/repo/wal/$walgen_sysid")
br_wal=$(bytes_of "$br_dir/repo/archive/walgen")
raw_wal=$((WAL_SEGS * SEG))
python3 - "$push_times" "$raw_wal" "$ll_wal" "$br_wal" >>"$rows" <<'PY'
import statistics, sys
path, raw, sizes = sys.argv[1], int(sys.argv[2]), {"lifeline": int(sys.argv[3]), "pgbackrest": int(sys.argv[4])}
by = {}
for line in open(path):
    tool, seg, times, rusage = line.rstrip("\n").split("\t")
    t0, t1 = (float(x) for x in times.split())
    u, s, rss = rusage.split()
    by.setdefault(tool, []).append((t1 - t0, float(u), float(s), int(rss)))
for tool in ("lifeline", "pgbackrest"):
    rs = by[tool]
    walls = sorted(r[0] for r in rs)
    n = len(walls)
    pct = lambda p: walls[min(n - 1, max(0, round(p / 100 * n + 0.5) - 1))]  # nearest rank
    cpu = statistics.mean(r[1] + r[2] for r in rs)
    rss = max(r[3] for r in rs)
    seg = raw / n
    per_min = n / sum(walls) * 60
    detail = (f"n={n}; max {max(walls) * 1000:.0f} ms; CPU {cpu * 1000:.0f} ms/segment; "
              f"{per_min:,.0f} segments/min back to back; "
              f"archive {sizes[tool]} bytes = {sizes[tool] / raw:.3f} of {raw} raw")
    for step, w in (("wal-push-mean", statistics.mean(walls)), ("wal-push-p50", pct(50)), ("wal-push-p95", pct(95))):
        mbps = seg / 1e6 / w if w else 0
        u = statistics.mean(r[1] for r in rs); s = statistics.mean(r[2] for r in rs)
        print(f"{tool}\t{step}\t{w:.4f}\t{u:.4f}\t{s:.4f}\t{rss}\t{int(seg)}\t{mbps:.1f}\t0\t{sizes[tool]}\t{sizes[tool]}\t{detail}")
PY
grep -P '\twal-push' "$rows" | while IFS=$'\t' read -r tool step w _ _ _ _ mbps _ _ _ detail; do
	log "$(printf '%-10s %-14s %8.1f ms %8s MB/s  %s' "$tool" "$step" "$(awk -v w="$w" 'BEGIN{print w * 1000}')" "$mbps" "$detail")"
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- outputs -------------------------------------------------------------------------------------------------
{
	printf 'tool\tstep\twall_s\tuser_s\tsys_s\tmaxrss_kib\tinput_bytes\tmb_per_s\trepo_bytes\twal_archive_bytes\tadded_bytes\tdetail\n'
	cat "$rows"
} >"$OUT_TSV"

export OUT_MD OUT_TSV DATASET SCALE VEC_ROWS WAL_SEGS LOAD_A_SECS LOAD_B_SECS DIM cache_note load_start load_end
export src_bytes db_bytes n_accounts n_vectors vec_bytes target expected latest
total_minutes=$(awk -v a="$t_run" -v b="$(now)" 'BEGIN{printf "%.1f", (b - a) / 60}')
n_cpu=$(nproc) kernel=$(uname -r) mem_total=$(free -h | awk '/^Mem:/{print $2}')
cpu_model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
run_date=$(date -u '+%Y-%m-%d %H:%M UTC')
v_pgbackrest=$(pgbackrest version | head -n1)
v_postgres=$("$PG_BIN/postgres" --version | head -n1)
export total_minutes n_cpu kernel mem_total cpu_model run_date v_lifeline v_pgbackrest v_postgres
python3 "$bench/pg_report.py"
