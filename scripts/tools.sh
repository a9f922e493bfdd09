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
INSTALLING="the tools"
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

# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

# shellcheck source=scripts/apt.sh
source "$(dirname "$0")/apt.sh"

install_promtool() {
	[[ -x $PROMTOOL ]] && return 0
	log "unpacking promtool from Debian's prometheus package into $PROMETHEUS_HOME"
	apt_unpack "$PROMETHEUS_HOME.tmp" prometheus
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
		apt_install "${APT_PACKAGES[@]}"
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
