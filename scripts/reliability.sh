#!/usr/bin/env bash
# The hostile reliability suites (docs/reliability.md), one command each. CI runs the short
# profiles as part of scripts/test.sh; these are the long ones, run by hand and recorded.
# Usage: scripts/reliability.sh crash [KILLS]       every writing command killed KILLS times (default
#                                                   100; CI: 10), LIFELINE_CRASH_SEED picks the seed
#        scripts/reliability.sh corruption          the corruption matrix (every object kind × damage)
#        scripts/reliability.sh disk                full disks, read-only storage and source read errors
#                                                   (needs root; faultfs needs /dev/fuse)
#        scripts/reliability.sh storage             S3 faults and a Garage node stopped, for every command
#        scripts/reliability.sh postgres            PostgreSQL under stress
#        scripts/reliability.sh stress [SECONDS]    prune in a loop beside four backup loops (default 1800)
#        scripts/reliability.sh fuzz [SECONDS]      every fuzz target, SECONDS in all (default 3600)
# Each prints its figures (the lines the tests print with --nocapture); servers are started as
# scripts/test.sh starts them.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

# One test binary of the lifeline crate through scripts/test.sh (which starts Garage, PostgreSQL
# and the rest), its figures printed.
suite() {
	local test=$1
	shift
	scripts/test.sh -p lifeline --test "$test" -- --nocapture "$@" 2>&1 |
		grep -E --line-buffered 'crash-matrix|faults:|^test |test result|panicked|seed'
	return "${PIPESTATUS[0]}"
}

[[ $# -ge 1 ]] || usage
case $1 in
crash)
	LIFELINE_CRASH_KILLS=${2:-100} suite crash_matrix
	;;
corruption)
	suite corruption_matrix
	;;
disk)
	suite full_disk
	suite read_errors
	;;
storage)
	suite s3 faults node
	;;
postgres)
	suite pg_stress
	;;
stress)
	LIFELINE_STRESS_SECS=${2:-1800} suite prune prune_in_a_loop_beside_four_backup_loops
	;;
fuzz)
	scripts/fuzz.sh long "${2:-3600}"
	;;
*)
	usage
	;;
esac
