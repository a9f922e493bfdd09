#!/usr/bin/env bash
# A restore drill of the PostgreSQL test database: does lifeline prove a Tier-1 restore (RTO 15 min;
# issue 11's target: under 5 minutes on this machine)?
#
#   scripts/postgres.sh install && cargo build -p lifeline && bench/drill.sh
#
# PostgreSQL 18 with pgvector: pgbench -i -s 100 (10 M accounts, ~1.5 GB) and 100,000 embeddings of
# 384 dimensions in the five chatbot schemas' knowledge table; WAL archived into the repository by
# `lifeline pg wal-push`; one full base backup by `lifeline run`; then `lifeline drill`, whose JSON
# (steps with timings, checks, RTO and RPO against tier1) is summarised in a table.
#
# Knobs: SCALE (100), VEC_ROWS (100000), LIFELINE_BIN (target/debug/lifeline), KEEP=1 keeps the work
# folder bench/work/drill. Needs root: the servers run as the `postgres` OS user.
set -euo pipefail

bench="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$bench/.." && pwd)"
SCALE="${SCALE:-100}" VEC_ROWS="${VEC_ROWS:-100000}" DIM=384
LIFELINE_BIN="${LIFELINE_BIN:-$root/target/debug/lifeline}"
KEEP="${KEEP:-0}"
work="$bench/work/drill"

log() { echo "drill: $*" >&2; }
die() { echo "drill: ERROR: $*" >&2; exit 1; }
((EUID == 0)) || die "run as root: the servers run as the postgres user (runuser)"
[ -x "$LIFELINE_BIN" ] || die "no lifeline binary at $LIFELINE_BIN (cargo build -p lifeline)"
eval "$("$root/scripts/postgres.sh" env)"
PG_BIN="$LIFELINE_PG18_BIN"
as_pg() { (cd / && runuser -u postgres -- "$@"); }

cleanup() {
	[ -f "$work/main/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" stop -D "$work/main/data" -m fast -w >/dev/null 2>&1 || true
	[ "$KEEP" = 1 ] || rm -rf "$work/main" "$work/repo"
}
cleanup
rm -rf "$work"
mkdir -p "$work/bin"
trap cleanup EXIT
install -m 755 "$LIFELINE_BIN" "$work/bin/lifeline"
LL="$work/bin/lifeline"
printf 'lifeline-drill-bench\n' >"$work/password"
chmod 600 "$work/password"
chown -R postgres: "$work"
plan="$work/plan.toml"

q() { as_pg "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -d postgres "$@"; }

as_pg "$LL" init --repo "$work/repo" --password-file "$work/password" >/dev/null
port=$(ARCHIVE_COMMAND=/bin/true "$root/scripts/postgres.sh" start 18 "$work/main" "max_wal_size = 4GB" 2>/dev/null)
cat >"$plan" <<EOF
[repository]
url = "$work/repo"
key = { password_file = "$work/password" }

[tiers]
tier1 = { rto = "15m", rpo = "5m" }

[classes.patient-data]
tier = "tier1"

[[sources]]
name = "chatbot-db"
kind = "postgres"
class = "patient-data"
db = "postgresql://postgres@127.0.0.1:$port/postgres"
base_backup = { full = "0 2 * * *" }
checks = [{ name = "accounts", sql = "SELECT count(*) FROM pgbench_accounts", expect = "$((SCALE * 100000))" }]

[postgres]
bin_dir = "$PG_BIN"
EOF
chown postgres: "$plan"

log "loading pgbench scale $SCALE and $VEC_ROWS vectors of $DIM dimensions"
t0=$(date +%s)
as_pg "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -i -s "$SCALE" -q postgres >"$work/pgbench.log" 2>&1
q >/dev/null <<SQL
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA chatbot_knowledge;
CREATE TABLE chatbot_knowledge.document_embeddings (id int PRIMARY KEY, embedding vector($DIM) NOT NULL);
SELECT setseed(0.42);
INSERT INTO chatbot_knowledge.document_embeddings
  SELECT i, (SELECT array_agg((random() * 2 - 1)::real) FROM generate_series(1, $DIM) WHERE i > 0)::vector
  FROM generate_series(1, $VEC_ROWS) i;
VACUUM (FREEZE, ANALYZE);
SQL
log "loaded in $(($(date +%s) - t0)) s; $(q -c "SELECT pg_size_pretty(pg_database_size('postgres'))")"
q -v cmd="$LL --config $plan pg wal-push %p" >/dev/null <<'SQL'
ALTER SYSTEM SET archive_command = :'cmd';
SELECT pg_reload_conf();
SQL

log "full base backup"
t0=$(date +%s.%N)
as_pg "$LL" --config "$plan" run chatbot-db --json >"$work/backup.json"
backup_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
q -c "SELECT pg_switch_wal()" >/dev/null
sleep 2

log "drill"
set +e
as_pg "$LL" --config "$plan" drill chatbot-db --json >"$work/drill.json" 2>"$work/drill.log"
rc=$?
set -e
[ -s "$work/drill.json" ] || { tail -n 30 "$work/drill.log" >&2; die "the drill printed no report (exit $rc)"; }

python3 - "$work/drill.json" "$backup_s" "$rc" "$SCALE" "$VEC_ROWS" "$(q -c "SELECT pg_size_pretty(pg_database_size('postgres'))")" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
backup_s, rc, scale, vectors, size = sys.argv[2:7]
d = report["sources"][0]["record"]
print(f"drill of chatbot-db: pgbench scale {scale} + {vectors} vectors ({size}); base backup {backup_s} s")
print(f"exit code {rc}; passed: {d['passed']}" + (f" ({d['error']})" if d.get("error") else ""))
print()
print("| step | seconds | ok |")
print("|---|---:|---|")
for s in d["steps"]:
    print(f"| {s['name']} | {s['seconds']:.1f} | {'yes' if s['ok'] else 'no: ' + (s.get('message') or '')} |")
print()
checks = d["checks"]
counts = {r: sum(1 for c in checks if c["result"] == r) for r in ("pass", "warn", "fail")}
print(f"checks: {counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail")
for c in checks:
    if c["result"] != "pass":
        print(f"  {c['result']}: {c['name']}: {c.get('message') or ''}")
rto, rpo = d["rto_seconds"], d["rpo_seconds"]
print(f"RTO {rto:.1f} s (target {d['rto_target_seconds']:.0f} s, issue target 300 s: {'met' if rto < 300 else 'MISSED'}); RPO {rpo:.1f} s (target {d['rpo_target_seconds']:.0f} s)")
PY
