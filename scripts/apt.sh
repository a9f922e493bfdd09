# shellcheck shell=bash
# Shared by the install scripts (tools.sh, redis.sh, softhsm.sh, faultfs.sh): sourced, never run. The caller sets
# APT_MARKER (a file whose age says when apt's lists were last refreshed) and INSTALLING (what is being
# installed, for error messages), and sources common.sh (`log`, `die`) first.

# Runs a command quietly; on failure prints the command and all it said, then stops.
run() {
	local out
	if ! out=$("$@" 2>&1); then
		log "command failed: $*"
		printf '%s\n' "$out" >&2
		die "could not install $INSTALLING (see the output above)"
	fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

apt_refresh() {
	log "refreshing apt's package lists"
	run apt-get update -qq
	touch "$APT_MARKER"
}

# Refreshes apt's package lists at most once a day, and only when a wanted package is unknown to it.
apt_refresh_for() {
	local pkg
	[[ -z $(find "$APT_MARKER" -mmin -1440 2>/dev/null) ]] || return 0
	for pkg in "$@"; do
		if ! apt-cache show "$pkg" >/dev/null 2>&1; then
			apt_refresh
			return 0
		fi
	done
}

# apt-get installs those of the packages not yet installed.
apt_install() {
	local pkg missing=()
	for pkg in "$@"; do
		installed "$pkg" || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	apt_refresh_for "${missing[@]}"
	log "apt-get install ${missing[*]}"
	# Lists that know a package can still name a version the mirror has dropped (a security
	# update): then one refresh and a second try.
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
		log "apt-get install failed; refreshing apt's package lists and trying again"
		apt_refresh
		DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
}

# apt_unpack DIR PACKAGE...: downloads the packages and unpacks them all into DIR with `dpkg -x`,
# without installing them (no maintainer scripts, no services started). DIR is emptied first.
apt_unpack() {
	local dir=$1 stage deb
	shift
	apt_refresh_for "$@"
	stage=$(mktemp -d)
	# apt-get download writes into the current folder, as the _apt user when it can.
	if ! (cd "$stage" && chmod 777 . && apt-get download -qq "$@" >/dev/null 2>&1); then
		log "apt-get download $* failed; refreshing apt's package lists and trying again"
		apt_refresh
		(cd "$stage" && run apt-get download -qq "$@")
	fi
	rm -rf "$dir"
	for deb in "$stage"/*.deb; do
		[[ -f $deb ]] || die "apt-get download $* left no .deb in $stage"
		run dpkg -x "$deb" "$dir"
	done
	rm -rf "$stage"
}

# apt_ensure PACKAGE...: apt_install for a script's own packages, as root, once TOOLS_HOME (the
# caller's, holding APT_MARKER) exists; nothing to do, and no root needed, when all are installed.
apt_ensure() {
	local pkg
	for pkg in "$@"; do
		installed "$pkg" && continue
		((EUID == 0)) || die "installing $INSTALLING needs root"
		install -d -m 755 "$TOOLS_HOME"
		apt_install "$@"
		return
	done
}
