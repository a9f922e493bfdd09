#!/usr/bin/env bash
# Fuzz every parser of untrusted bytes: the cargo-fuzz targets in fuzz/ (fuzz/RESULTS.md lists
# them), built on stable Rust (RUSTC_BOOTSTRAP=1, no sanitizer) and run with libFuzzer.
# Usage: scripts/fuzz.sh ci                      build once, run every target briefly
#                                                (FUZZ_CI_SECONDS, default 4, each); fails on any crash
#        scripts/fuzz.sh long [SECONDS_TOTAL]    SECONDS_TOTAL (default 3600) split evenly across the
#                                                targets; prints a summary of executions per target
#        scripts/fuzz.sh run TARGET [SECONDS]    one target (default 60 s)
#        scripts/fuzz.sh list                    the targets
# Corpora grow in fuzz/corpus/<target> (seeded by each target itself), crashing inputs land in
# fuzz/artifacts/<target>, builds and logs in LIFELINE_FUZZ_TARGET_DIR (default
# ~/.cache/lifeline/fuzz-target); none of it is committed. cargo-fuzz is installed with
# `cargo install cargo-fuzz --locked` when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

FUZZ_DIR=fuzz
# Outside the checkout, so that CI's clean checkouts reuse the last build (7.5 min cold, seconds warm).
FUZZ_TARGET_DIR=${LIFELINE_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeline/fuzz-target}
# Codegen units: cargo-fuzz builds with 1 (fastest fuzzing); `ci` passes 16 (faster build).
FUZZ_CODEGEN_UNITS=
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

targets() {
	# The [[bin]] names of fuzz/Cargo.toml, in file order.
	awk '/^\[\[bin\]\]/ { bin = 1; next } bin && /^name = / { gsub(/"/, "", $3); print $3; bin = 0 }' \
		"$FUZZ_DIR/Cargo.toml"
}

build() {
	if ! cargo fuzz --version >/dev/null 2>&1; then
		log "cargo-fuzz not found; installing it with 'cargo install cargo-fuzz --locked'"
		cargo install cargo-fuzz --locked
	fi
	local started=$SECONDS
	log "building the fuzz targets (release, debug assertions, no sanitizer, stable Rust)"
	# --sanitizer none needs no nightly feature but sanitizer-coverage flags that cargo-fuzz passes
	# as -Z options: RUSTC_BOOTSTRAP lets stable rustc take them.
	# FUZZ_CARGO_LOCK=<file>: hold that lock (flock) while building, on machines that share one.
	${FUZZ_CARGO_LOCK:+flock "$FUZZ_CARGO_LOCK"} env RUSTC_BOOTSTRAP=1 \
		cargo fuzz build --fuzz-dir "$FUZZ_DIR" --sanitizer none --target-dir "$FUZZ_TARGET_DIR" \
		${FUZZ_CODEGEN_UNITS:+--codegen-units "$FUZZ_CODEGEN_UNITS"} ||
		die "the fuzz targets do not build"
	log "built in $((SECONDS - started)) s"
}

bin_dir() {
	local host
	host=$(rustc -vV | sed -n 's/^host: //p')
	echo "$FUZZ_TARGET_DIR/$host/release"
}

# run TARGET SECONDS: seed, fuzz, and print one summary line; returns 1 when the target crashed.
run_target() {
	local target=$1 seconds=$2 bin corpus logs log_file status=0
	bin="$(bin_dir)/$target"
	[[ -x $bin ]] || die "no fuzz target binary $bin (is $target a target? see: scripts/fuzz.sh list)"
	corpus="$FUZZ_DIR/corpus/$target"
	logs="$FUZZ_TARGET_DIR/logs"
	mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$target" "$logs"
	log_file="$logs/$target.log"
	# Each target writes its structure-aware seeds (real encoded objects) and exits.
	LIFELINE_FUZZ_SEEDS="$corpus" "$bin" >/dev/null 2>&1 || die "$target could not write its seeds"
	# -timeout: an input that takes longer is a hang; -rss_limit_mb: more memory is an OOM.
	"$bin" "$corpus" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/artifacts/$target/" \
		>"$log_file" 2>&1 || status=$?
	local execs eps rss cov ft entries
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_file" | tail -1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log_file" | tail -1)
	rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log_file" | tail -1)
	cov=$(grep -oE 'cov: [0-9]+' "$log_file" | tail -1 | cut -d' ' -f2)
	ft=$(grep -oE 'ft: [0-9]+' "$log_file" | tail -1 | cut -d' ' -f2)
	entries=$(find "$corpus" -type f | wc -l)
	printf '%-16s %6s %12s %8s %7s %7s %8s %7s %s\n' "$target" "$seconds" "${execs:-?}" "${eps:-?}" \
		"${cov:-?}" "${ft:-?}" "$entries" "${rss:-?}" "$([[ $status -eq 0 ]] && echo ok || echo CRASH)"
	if [[ $status -ne 0 ]]; then
		log "$target FAILED (exit $status); its log: $log_file; crashing input(s):"
		find "$FUZZ_DIR/artifacts/$target" -type f -newer "$corpus" >&2 || true
		grep -E -A12 '^==[0-9]+== ERROR|panicked at|^thread .* panicked|deadly signal|out-of-memory|timeout' \
			"$log_file" | head -40 >&2 || true
		return 1
	fi
}

header() {
	printf '%-16s %6s %12s %8s %7s %7s %8s %7s %s\n' target seconds execs exec/s cov features corpus rss_mb result
}

run_all() {
	local seconds=$1 failed=() started=$SECONDS target
	header
	for target in $(targets); do
		run_target "$target" "$seconds" || failed+=("$target")
	done
	log "ran $(targets | wc -l) targets, ${seconds} s each, in $((SECONDS - started)) s"
	if [[ ${#failed[@]} -gt 0 ]]; then
		die "crashes in: ${failed[*]} (inputs in $FUZZ_DIR/artifacts/<target>/; reproduce with $(bin_dir)/<target> <input>)"
	fi
}

case "${1:-}" in
list)
	targets
	;;
ci)
	FUZZ_CODEGEN_UNITS=16
	build
	run_all "${FUZZ_CI_SECONDS:-4}"
	;;
long)
	total=${2:-3600}
	[[ $total =~ ^[0-9]+$ ]] || usage
	count=$(targets | wc -l)
	build
	each=$((total / count))
	[[ $each -ge 1 ]] || die "$total s across $count targets is less than a second each"
	log "long run: $total s across $count targets, $each s each"
	run_all "$each"
	;;
run)
	[[ -n ${2:-} ]] || usage
	build
	header
	run_target "$2" "${3:-60}"
	;;
*)
	usage
	;;
esac
