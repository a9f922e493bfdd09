#!/usr/bin/env bash
# Tools of the monitoring, deployment and browser tests: promtool (alert rules), kubernetes-validate
# (manifests) and Chromium with chromedriver (the daemon's status page), all from Debian and PyPI.
#
#   scripts/tools.sh install   install them under /opt/lifeline-tools and apt (idempotent, quick when done)
#   scripts/tools.sh env       print LIFELINE_PROMTOOL, LIFELINE_KUBERNETES_VALIDATE, LIFELINE_CHROMIUM,
#                              LIFELINE_CHROMEDRIVER and a PATH with promtool's folder, for `eval`
#
# promtool comes out of Debian's prometheus package unpacked with `dpkg -x`: installing the package
# would start a Prometheus server that nothing here wants.
set -euo pipefail

TOOLS_HOME=/opt/lifeline-tools
APT_MARKER=$TOOLS_HOME/.apt-updated
PROMETHEUS_HOME=$TOOLS_HOME/prometheus
PROMTOOL=$PROMETHEUS_HOME/usr/bin/promtool
# Pinned: its bundled schemas decide which Kubernetes versions scripts/deploy-check.sh can check against.
KUBERNETES_VALIDATE_VERSION=1.34.1
VENV=$TOOLS_HOME/venv-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION
KUBERNETES_VALIDATE=$VENV/bin/kubernetes-validate
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
# Debian's own Python for the venv: a python3 earlier on PATH (pyenv and the like) may vanish.
PYTHON=/usr/bin/python3
APT_PACKAGES=(chromium chromium-driver python3-venv)

log() { echo "tools.sh: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

usage() {
	sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# Runs a command quietly; on failure prints the command and all it said, then stops.
run() {
	local out
	if ! out=$("$@" 2>&1); then
		log "command failed: $*"
		printf '%s\n' "$out" >&2
		die "could not install the tools (see the output above)"
	fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

# Refreshes apt's package lists at most once a day, and only when a wanted package is unknown to it.
apt_refresh_for() {
	local pkg
	[[ -z $(find "$APT_MARKER" -mmin -1440 2>/dev/null) ]] || return 0
	for pkg in "$@"; do
		if ! apt-cache show "$pkg" >/dev/null 2>&1; then
			log "refreshing apt's package lists"
			run apt-get update -qq
			touch "$APT_MARKER"
			return 0
		fi
	done
}

install_apt() {
	local pkg missing=()
	for pkg in "${APT_PACKAGES[@]}"; do
		installed "$pkg" || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	apt_refresh_for "${missing[@]}"
	log "apt-get install ${missing[*]}"
	# Lists that know a package can still name a version the mirror has dropped (a security
	# update): then one refresh and a second try.
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
		log "apt-get install failed; refreshing apt's package lists and trying again"
		run apt-get update -qq
		touch "$APT_MARKER"
		DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
}

install_promtool() {
	[[ -x $PROMTOOL ]] && return 0
	apt_refresh_for prometheus
	log "unpacking promtool from Debian's prometheus package into $PROMETHEUS_HOME"
	local stage deb
	stage=$(mktemp -d)
	# apt-get download writes into the current folder, as the _apt user when it can.
	if ! (cd "$stage" && chmod 777 . && apt-get download -qq prometheus >/dev/null 2>&1); then
		log "apt-get download prometheus failed; refreshing apt's package lists and trying again"
		run apt-get update -qq
		touch "$APT_MARKER"
		(cd "$stage" && run apt-get download -qq prometheus)
	fi
	deb=$(find "$stage" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)
	[[ -n $deb ]] || die "apt-get download prometheus left no prometheus_*.deb in $stage"
	rm -rf "$PROMETHEUS_HOME.tmp"
	run dpkg -x "$deb" "$PROMETHEUS_HOME.tmp"
	rm -rf "$stage"
	[[ -x $PROMETHEUS_HOME.tmp/usr/bin/promtool ]] || die "the prometheus package holds no usr/bin/promtool"
	# Renamed into place last: an interrupted install leaves nothing that looks complete.
	mv "$PROMETHEUS_HOME.tmp" "$PROMETHEUS_HOME"
}

install_kubernetes_validate() {
	[[ -f $VENV/.complete ]] && return 0
	log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
	# Built in place (a venv's scripts name their interpreter by absolute path); the marker, written
	# last, tells a finished venv from an interrupted one.
	rm -rf "$VENV"
	run "$PYTHON" -m venv "$VENV"
	PIP_ROOT_USER_ACTION=ignore run "$VENV/bin/pip" install --quiet --disable-pip-version-check \
		"kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
	touch "$VENV/.complete"
}

# Every tool must run, not merely exist.
verify() {
	local out
	out=$("$PROMTOOL" --version 2>&1) || die "$PROMTOOL --version failed: $out"
	log "$(head -n 1 <<<"$out")"
	out=$("$KUBERNETES_VALIDATE" --version 2>&1) || die "$KUBERNETES_VALIDATE --version failed: $out"
	log "kubernetes-validate $out"
	# Chromium refuses to run as root without --no-sandbox; --version needs neither sandbox nor display.
	# Debian's launcher script may print shell noise before the version (its /dev/shm size test).
	out=$("$CHROMIUM" --version 2>&1) || die "$CHROMIUM --version failed: $out"
	grep -q '^Chromium ' <<<"$out" || die "$CHROMIUM --version printed no version: $out"
	log "$(grep -m 1 '^Chromium ' <<<"$out")"
	out=$("$CHROMEDRIVER" --version 2>&1) || die "$CHROMEDRIVER --version failed: $out"
	log "$(head -n 1 <<<"$out")"
}

cmd_install() {
	local t0=$SECONDS
	if [[ ! -x $PROMTOOL || ! -f $VENV/.complete ]] || ! installed chromium || ! installed chromium-driver; then
		((EUID == 0)) || die "installing needs root"
		install -d -m 755 "$TOOLS_HOME"
		install_apt
		install_promtool
		install_kubernetes_validate
	fi
	verify
	log "ready in $((SECONDS - t0))s"
}

cmd_env() {
	printf 'export %s=%q\n' LIFELINE_PROMTOOL "$PROMTOOL" LIFELINE_KUBERNETES_VALIDATE "$KUBERNETES_VALIDATE" \
		LIFELINE_CHROMIUM "$CHROMIUM" LIFELINE_CHROMEDRIVER "$CHROMEDRIVER"
	# Only promtool's folder: the venv's bin/ also holds a python3 that must not shadow the system's.
	printf 'export PATH=%q:"$PATH"\n' "${PROMTOOL%/*}"
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
