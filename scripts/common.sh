# shellcheck shell=bash
# Shared by the project's scripts: sourced, never run. log and die name the script that sourced it;
# usage prints that script's header comment (its second line up to the first line that is not a
# comment) and exits 2.

_LIFELINE_SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

log() { echo "$(basename "$_LIFELINE_SCRIPT"): $*" >&2; }

die() {
	log "error: $*"
	exit 1
}

usage() {
	awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$_LIFELINE_SCRIPT" >&2
	exit 2
}
