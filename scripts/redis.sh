#!/usr/bin/env bash
# Redis for the Redis source's tests: Debian bookworm's redis-server 7.0.15 (built with TLS), unpacked
# with `dpkg -x`, never installed as a package: installing it would start a Redis service nothing here wants.
#
#   scripts/redis.sh install   unpack it under /opt/lifeline-tools and apt-get its libraries (idempotent, quick when done)
#   scripts/redis.sh env       print LIFELINE_REDIS_SERVER and LIFELINE_REDIS_CLI, for `eval`
set -euo pipefail

# Debian's upstream version; the package revision (the ~deb12uN security updates) may move under it.
REDIS_VERSION=7.0.15
TOOLS_HOME=/opt/lifeline-tools
REDIS_HOME=$TOOLS_HOME/redis-$REDIS_VERSION
REDIS_SERVER=$REDIS_HOME/usr/bin/redis-server
REDIS_CLI=$REDIS_HOME/usr/bin/redis-cli
APT_MARKER=$TOOLS_HOME/.apt-updated
INSTALLING=Redis
# redis-server is a symlink to redis-check-rdb, which redis-tools holds. The libraries are what
# redis-tools depends on (ldd confirms nothing is missing after unpacking).
DEB_PACKAGES=(redis-server redis-tools)
LIB_PACKAGES=(libjemalloc2 liblzf1 libssl3 libsystemd0 libatomic1)

# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

# shellcheck source=scripts/apt.sh
source "$(dirname "$0")/apt.sh"

install_redis() {
	[[ -x $REDIS_SERVER && -x $REDIS_CLI ]] && return 0
	apt_refresh_for "${DEB_PACKAGES[@]}"
	local candidate
	candidate=$(apt-cache policy redis-server | sed -n 's/^ *Candidate: //p')
	# 5:7.0.15-1~deb12u10: the epoch, then the upstream version this script pins.
	[[ $candidate == *:"$REDIS_VERSION"-* ]] ||
		die "apt offers redis-server ${candidate:-(none)}, not $REDIS_VERSION; this script expects Debian bookworm"
	log "unpacking redis-server $candidate into $REDIS_HOME"
	apt_unpack "$REDIS_HOME.tmp" "${DEB_PACKAGES[@]}"
	[[ -x $REDIS_HOME.tmp/usr/bin/redis-check-rdb ]] || die "the packages hold no usr/bin/redis-check-rdb"
	# Renamed into place last: an interrupted install leaves nothing that looks complete.
	mv "$REDIS_HOME.tmp" "$REDIS_HOME"
}

# The programs must run, not merely exist: a missing library shows here.
verify() {
	local out missing
	missing=$(ldd "$REDIS_HOME/usr/bin/redis-check-rdb" | grep 'not found' || true)
	[[ -z $missing ]] || die "redis-server lacks libraries: $missing"
	out=$("$REDIS_SERVER" --version 2>&1) || die "$REDIS_SERVER --version failed: $out"
	[[ $out == *"v=$REDIS_VERSION "* ]] || die "$REDIS_SERVER is not $REDIS_VERSION: $out"
	log "$out"
	out=$("$REDIS_CLI" --version 2>&1) || die "$REDIS_CLI --version failed: $out"
}

cmd_install() {
	local t0=$SECONDS pkg
	local ready=1
	[[ -x $REDIS_SERVER && -x $REDIS_CLI ]] || ready=0
	for pkg in "${LIB_PACKAGES[@]}"; do
		installed "$pkg" || ready=0
	done
	if ((!ready)); then
		((EUID == 0)) || die "installing needs root"
		install -d -m 755 "$TOOLS_HOME"
		apt_install "${LIB_PACKAGES[@]}"
		install_redis
	fi
	verify
	log "ready in $((SECONDS - t0))s"
}

cmd_env() {
	printf 'export %s=%q\n' LIFELINE_REDIS_SERVER "$REDIS_SERVER" LIFELINE_REDIS_CLI "$REDIS_CLI"
}

main() {
	[[ $# -eq 1 ]] || usage
	case $1 in
	install) cmd_install ;;
	env) cmd_env ;;
	*) usage ;;
	esac
}

main "$@"
