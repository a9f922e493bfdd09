#!/usr/bin/env bash
# A MongoDB-protocol server for lifeline's MongoDB source tests: FerretDB 1.24 on its SQLite backend,
# built from the Go module proxy.
#
#   scripts/mongo.sh install     build FerretDB under /opt/lifeline-tools (idempotent, quick when done)
#   scripts/mongo.sh env         print LIFELINE_FERRETDB, for `eval`
#   scripts/mongo.sh start DIR   start (or resume) FerretDB with its data in DIR on a free loopback port;
#                                prints its env (MONGODB_URI) on stdout and writes it to DIR/env
#   scripts/mongo.sh stop DIR    stop DIR's server: SIGTERM, SIGKILL after a grace period (data is kept)
#
# MongoDB's Database Tools (mongodump, mongorestore) come from none of this machine's registries: the Go
# module proxy refuses github.com/mongodb/mongo-tools (and its build dependency
# github.com/craiggwilson/goke) with 403, and Debian bookworm has no package. lifeline does not need
# them: it reads and writes the archive format itself (docs/sources/mongodb.md).
# Layout of DIR: DIR/data (the SQLite files), DIR/state, DIR/port, DIR/pid, DIR/log, DIR/env.
set -euo pipefail

FERRETDB_VERSION=v1.24.2
TOOLS_HOME=/opt/lifeline-tools
FERRETDB_HOME=$TOOLS_HOME/ferretdb-$FERRETDB_VERSION
FERRETDB=$FERRETDB_HOME/bin/ferretdb
STOP_GRACE_SECS=10
WAIT_SECS=60

# Go's caches live beside the install so that they survive and stay out of $HOME; GOTOOLCHAIN=local
# because go.mod's `toolchain go1.24.3` is older than this machine's Go and nothing may be downloaded.
export GOPATH=$TOOLS_HOME/go GOMODCACHE=$TOOLS_HOME/go/pkg/mod GOCACHE=$TOOLS_HOME/go/cache
export GOTOOLCHAIN=local CGO_ENABLED=0 # the SQLite backend is modernc.org/sqlite: pure Go

# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

# Not `go install …@version`: FerretDB's build/version panics at start-up ("Invalid
# build/version/version.txt file content") in a binary whose main module is FerretDB itself but whose
# embedded version.txt is missing, and the module zip has none. So build a copy of the module source
# with version.txt written in. Default build tags: SQLite and PostgreSQL backends, no debug build.
install_ferretdb() {
	[[ -x $FERRETDB ]] && return 0
	local stage=$FERRETDB_HOME.tmp src
	rm -rf "$stage"
	install -d -m 755 "$stage/bin"
	log "building FerretDB $FERRETDB_VERSION into $FERRETDB_HOME (a few minutes the first time)"
	src=$(cd "$stage" && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d $src ]] || die "go mod download gave no source folder for FerretDB $FERRETDB_VERSION"
	cp -R "$src" "$stage/src"
	chmod -R u+w "$stage/src" # the module cache is read-only
	echo "$FERRETDB_VERSION" >"$stage/src/build/version/version.txt"
	(cd "$stage/src" && go build -trimpath -o "$stage/bin/ferretdb" ./cmd/ferretdb)
	rm -rf "$stage/src"
	# Renamed into place last: an interrupted install leaves nothing that looks complete.
	mv "$stage" "$FERRETDB_HOME"
}

# The programs must run, not merely exist.
verify() {
	local out
	out=$("$FERRETDB" --version 2>&1) || die "$FERRETDB --version failed: $out"
	grep -q "^version: $FERRETDB_VERSION\$" <<<"$out" || die "$FERRETDB is not $FERRETDB_VERSION: $out"
	log "ferretdb $FERRETDB_VERSION ($FERRETDB)"
}

cmd_install() {
	local t0=$SECONDS
	if [[ ! -x $FERRETDB ]]; then
		command -v go >/dev/null || die "go is not installed"
		install -d -m 755 "$TOOLS_HOME"
		install_ferretdb
	fi
	verify
	log "ready in $((SECONDS - t0))s"
}

cmd_env() {
	printf 'export %s=%q\n' LIFELINE_FERRETDB "$FERRETDB"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A real MongoDB command: OP_MSG {ping: 1, $db: "admin"}, answered with {ok: 1.0}. Python's standard
# library, so that no MongoDB client needs installing for the check.
ping_server() {
	python3 - "$1" <<'EOF'
import socket, struct, sys
body = b"\x10ping\x00" + struct.pack("<i", 1) + b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
doc = struct.pack("<i", len(body) + 5) + body + b"\x00"
msg = struct.pack("<I", 0) + b"\x00" + doc  # flagBits, then a kind-0 section
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    s.sendall(struct.pack("<iiii", 16 + len(msg), 1, 0, 2013) + msg)  # 2013: OP_MSG
    reply = s.recv(4)
    while len(reply) < 4 or len(reply) < struct.unpack("<i", reply[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        reply += chunk
sys.exit(0 if b"\x01ok\x00" + struct.pack("<d", 1.0) in reply else "no ok: 1 in the reply: %r" % reply)
EOF
}

# Alive and not a zombie (in a container whose PID 1 never reaps, a dead server stays a zombie).
alive() {
	local state
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}

# The PID of DIR's server if it is alive and really is ours (a stale pid file may name a reused PID).
server_pid() {
	local pid
	[[ -f $DIR/pid ]] || return 1
	pid=$(<"$DIR/pid")
	[[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--sqlite-url=file:$DIR/data/" || return 1
	echo "$pid"
}

cmd_start() {
	local port deadline out
	[[ -x $FERRETDB ]] || die "FerretDB is not installed (run: $0 install)"
	mkdir -p "$1"
	DIR=$(cd "$1" && pwd -P)
	# The SQLite URL is a file: URL; a space or a '?' in the path would change its meaning.
	[[ $DIR =~ ^[A-Za-z0-9/._-]+$ ]] || die "unsupported characters in the path $DIR"
	mkdir -p "$DIR/data" "$DIR/state"
	# The port is kept across restarts, so that a resumed server has the same URI.
	[[ -s $DIR/port ]] || free_port >"$DIR/port"
	port=$(<"$DIR/port")
	if ! server_pid >/dev/null; then
		log "starting FerretDB on 127.0.0.1:$port (data: $DIR/data, log: $DIR/log)"
		# No telemetry (nothing may phone home), no debug HTTP listener (its fixed port 8088 would clash
		# between servers). Detached from our stdout: a caller capturing it must not wait for the server.
		nohup "$FERRETDB" --handler=sqlite "--sqlite-url=file:$DIR/data/" "--listen-addr=127.0.0.1:$port" \
			"--state-dir=$DIR/state" --debug-addr=- --telemetry=disable --log-level=info \
			</dev/null >>"$DIR/log" 2>&1 &
		echo $! >"$DIR/pid"
	fi
	deadline=$((SECONDS + WAIT_SECS))
	until out=$(ping_server "$port" 2>&1); do
		if ! server_pid >/dev/null || ((SECONDS >= deadline)); then
			log "FerretDB did not answer a ping on 127.0.0.1:$port: $out"
			log "--- tail of $DIR/log"
			tail -n 30 "$DIR/log" >&2 || true
			exit 1
		fi
		sleep 0.2
	done
	printf 'export %s=%q\n' MONGODB_URI "mongodb://127.0.0.1:$port/" FERRETDB_DIR "$DIR" >"$DIR/env.tmp"
	mv "$DIR/env.tmp" "$DIR/env" # atomic: a reader never sees half a file
	log "FerretDB answers on 127.0.0.1:$port (env: $DIR/env)"
	cat "$DIR/env"
}

# Waits up to $2 seconds for PID $1 to be gone (a dying process holds its port until then).
gone_within() {
	local deadline=$((SECONDS + $2))
	while alive "$1"; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

cmd_stop() {
	local pid
	[[ -d $1 ]] || die "no such folder: $1"
	DIR=$(cd "$1" && pwd -P)
	pid=$(server_pid) || return 0
	kill -TERM "$pid"
	if ! gone_within "$pid" "$STOP_GRACE_SECS"; then
		log "FerretDB ($pid) ignored SIGTERM for ${STOP_GRACE_SECS}s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		gone_within "$pid" 5 || die "FerretDB ($pid) is still alive after SIGKILL"
	fi
	rm -f "$DIR/pid"
}

main() {
	[[ $# -ge 1 ]] || usage
	case $1 in
	install | env) [[ $# -eq 1 ]] || usage ;;
	start | stop) [[ $# -eq 2 ]] || usage ;;
	*) usage ;;
	esac
	"cmd_$1" "${@:2}"
}

main "$@"
