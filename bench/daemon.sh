#!/usr/bin/env bash
# The daemon's footprint (issue 10 targets: idle CPU < 0.5 %, RSS < 30 MB with ten sources, a metrics
# scrape < 50 ms). Builds the release binary, starts a daemon with ten files sources scheduled daily
# (after their first run at start), lets the first jobs finish, then measures for DURATION seconds.
# Usage: bench/daemon.sh [DURATION]   (default 120; LIFELINE_BIN=path skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-120}
if [[ -z ${LIFELINE_BIN:-} ]]; then
	cargo build --release --locked -p lifeline >/dev/null
fi
BIN=${LIFELINE_BIN:-$PWD/target/release/lifeline}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifeline-daemon-bench.XXXXXX")
trap 'kill "$PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "bench password" >"$WORK/password"
"$BIN" init --repo "$WORK/repo" --password-file "$WORK/password" >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
	printf '[repository]\nurl = "%s"\nkey = { password_file = "%s" }\n\n' "$WORK/repo" "$WORK/password"
	printf '[tiers]\ntier3 = { rto = "4h", rpo = "1h" }\n\n[classes.documents]\ntier = "tier3"\n\n'
	for i in $(seq 1 10); do
		mkdir -p "$WORK/data$i"
		head -c 100000 /dev/urandom >"$WORK/data$i/file"
		printf '[[sources]]\nname = "s%d"\nkind = "files"\nclass = "documents"\npaths = ["%s"]\nschedule = "0 2 * * *"\n\n' "$i" "$WORK/data$i"
	done
	printf '[metrics]\nlisten = "127.0.0.1:%s"\n' "$PORT"
} >"$WORK/plan.toml"
"$BIN" --config "$WORK/plan.toml" daemon 2>"$WORK/daemon.log" &
PID=$!
# The ten first runs (never run before) start at once, two at a time; wait until all are done.
for _ in $(seq 1 120); do
	if curl -sf "http://127.0.0.1:$PORT/metrics" | grep -c '^lifeline_runs_total' | grep -qx 10; then break; fi
	sleep 1
done
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
t0=$(ticks)
sleep "$DURATION"
t1=$(ticks)
hz=$(getconf CLK_TCK)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
cpu=$(python3 -c "print(f'{100 * ($t1 - $t0) / $hz / $DURATION:.3f}')")
scrape=$(for _ in $(seq 1 20); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/metrics"; done | sort -n | awk '{a[NR]=$1} END {printf "p50 %.1f ms, max %.1f ms", a[int(NR/2)+1]*1000, a[NR]*1000}')
echo "daemon, 10 sources, idle ${DURATION}s: CPU ${cpu}%, RSS $((rss_kb / 1024)) MiB ($rss_kb KiB); /metrics scrape $scrape"
