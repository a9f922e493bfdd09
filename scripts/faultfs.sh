#!/usr/bin/env bash
# A FUSE file system whose chosen files fail to read part-way (EIO), for the tests of source read
# errors: scripts/faultfs.py on fusepy, with Debian bookworm's libfuse2 and fuse (fusermount).
#
#   scripts/faultfs.sh install     apt-get libfuse2 and fuse, fusepy into a venv, and check that a
#                                  mount works (idempotent, quick when done; needs root and /dev/fuse)
#   scripts/faultfs.sh env         print LIFELINE_FAULTFS_PYTHON, for `eval`
set -euo pipefail

SCRIPTS=$(cd "$(dirname "$0")" && pwd)
TOOLS_HOME=/opt/lifeline-tools
APT_MARKER=$TOOLS_HOME/.apt-updated
INSTALLING=faultfs
VENV=$TOOLS_HOME/faultfs-venv
FUSEPY_VERSION=3.0.1
APT_PACKAGES=(libfuse2 fuse)

# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

# shellcheck source=scripts/apt.sh
source "$SCRIPTS/apt.sh"

# A real mount, not merely installed packages: a container without /dev/fuse or the right to mount
# fails here, saying so, rather than in the middle of a test.
verify() {
	local dir pid
	[[ -c /dev/fuse ]] || die "/dev/fuse is missing: this machine cannot mount FUSE file systems"
	dir=$(mktemp -d)
	mkdir "$dir/root" "$dir/mnt"
	echo hello >"$dir/root/ok" && echo hello >"$dir/root/bad"
	echo "2 bad" >"$dir/control"
	"$VENV/bin/python" "$SCRIPTS/faultfs.py" "$dir/root" "$dir/mnt" "$dir/control" 2>"$dir/log" &
	pid=$!
	for _ in $(seq 50); do
		mountpoint -q "$dir/mnt" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! mountpoint -q "$dir/mnt"; then
		kill "$pid" 2>/dev/null || true
		die "faultfs did not mount: $(cat "$dir/log")"
	fi
	local ok=1
	[[ $(cat "$dir/mnt/ok") == hello ]] || ok=0
	if cat "$dir/mnt/bad" >/dev/null 2>&1; then ok=0; fi
	fusermount -u "$dir/mnt"
	wait "$pid" || true
	rm -rf "$dir"
	((ok)) || die "faultfs mounted but did not pass reads through and fail the armed file"
	log "libfuse2 $(dpkg-query -W -f='${Version}' libfuse2), fusepy $FUSEPY_VERSION: a test mount works"
}

cmd_install() {
	local t0=$SECONDS
	apt_ensure "${APT_PACKAGES[@]}"
	# A venv is not relocatable: built in place, checked by importing fusepy (which loads libfuse2).
	if ! "$VENV/bin/python" -c 'import fuse' >/dev/null 2>&1; then
		log "installing fusepy $FUSEPY_VERSION into $VENV"
		rm -rf "$VENV"
		python3 -m venv "$VENV"
		run "$VENV/bin/pip" install -q --disable-pip-version-check "fusepy==$FUSEPY_VERSION"
	fi
	verify
	log "ready in $((SECONDS - t0))s"
}

cmd_env() {
	printf 'export %s=%q\n' LIFELINE_FAULTFS_PYTHON "$VENV/bin/python"
}

main() {
	case ${1:-} in
	install | env)
		[[ $# -eq 1 ]] || usage
		"cmd_$1"
		;;
	*) usage ;;
	esac
}

main "$@"
