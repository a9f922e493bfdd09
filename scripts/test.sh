#!/usr/bin/env bash
# The project's test command: every unit, property, conformance and end-to-end test, including
# the S3 tests, which run against a real 3-node Garage cluster started here and stopped on exit,
# the PostgreSQL tests, which start their own PostgreSQL 15 and 18 servers, and the daemon's
# status page test, which renders it in headless Chromium, the Redis tests, which start their own
# redis-server 7.0, the KMS key slot tests, which wrap keys in their own SoftHSM2 tokens, and the
# MongoDB tests, which start their own FerretDB servers, and the ScyllaDB/Cassandra tests, which
# start their own Cassandra 5.0 clusters.
# Usage: scripts/test.sh [cargo test arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Garage is the S3 server the S3 tests talk to; cargo's bin dir is often missing from PATH.
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v garage >/dev/null 2>&1; then
	echo "test.sh: garage not found; installing it with 'cargo install garage --locked' (takes ~10 minutes, once)" >&2
	cargo install garage --locked
fi

# A fresh cluster per run: no state leaks between runs, and parallel runs do not collide.
GARAGE_TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/lifeline-garage.XXXXXX")
cleanup() {
	local status=$?
	scripts/garage.sh stop "$GARAGE_TEST_DIR" || true
	if [[ $status -eq 0 ]]; then
		rm -rf "$GARAGE_TEST_DIR"
	else
		echo "test.sh: Garage logs kept in $GARAGE_TEST_DIR/node*/log" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/garage.sh start "$GARAGE_TEST_DIR" >/dev/null
# shellcheck disable=SC1091
source "$GARAGE_TEST_DIR/env"

# The PostgreSQL tests start their own servers from LIFELINE_PG15_BIN and LIFELINE_PG18_BIN.
eval "$(scripts/postgres.sh env)"
if [[ ! -x $LIFELINE_PG15_BIN/postgres || ! -x $LIFELINE_PG18_BIN/postgres ]]; then
	echo "test.sh: PostgreSQL test servers not found; installing them with 'scripts/postgres.sh install'" >&2
	scripts/postgres.sh install
fi

# The daemon's status page test renders it in Chromium from LIFELINE_CHROMIUM.
eval "$(scripts/tools.sh env)"
if [[ ! -x $LIFELINE_CHROMIUM ]]; then
	echo "test.sh: Chromium not found; installing the test tools with 'scripts/tools.sh install'" >&2
	scripts/tools.sh install
fi

# The Redis source's tests start their own servers from LIFELINE_REDIS_SERVER.
eval "$(scripts/redis.sh env)"
if [[ ! -x $LIFELINE_REDIS_SERVER ]]; then
	echo "test.sh: redis-server not found; installing it with 'scripts/redis.sh install'" >&2
	scripts/redis.sh install
fi

# The KMS key slot tests make their own SoftHSM2 tokens (scripts/softhsm.sh token DIR) with
# LIFELINE_SOFTHSM_MODULE and LIFELINE_PKCS11_TOOL, and unwrap through scripts/kms-pkcs11.sh.
eval "$(scripts/softhsm.sh env)"
if [[ ! -f $LIFELINE_SOFTHSM_MODULE || ! -x $LIFELINE_PKCS11_TOOL ]]; then
	echo "test.sh: SoftHSM2 not found; installing it with 'scripts/softhsm.sh install'" >&2
	scripts/softhsm.sh install
fi

# The MongoDB source's tests start their own FerretDB servers with scripts/mongo.sh start.
eval "$(scripts/mongo.sh env)"
if [[ ! -x $LIFELINE_FERRETDB ]]; then
	echo "test.sh: FerretDB not found; building it with 'scripts/mongo.sh install' (about 2 minutes, once)" >&2
	scripts/mongo.sh install
fi

# The ScyllaDB/Cassandra source's tests start their own clusters with scripts/cassandra.sh start.
eval "$(scripts/cassandra.sh env)"
if [[ ! -x $LIFELINE_NODETOOL || ! -x $LIFELINE_CQLSH ]]; then
	echo "test.sh: Cassandra not found; installing it with 'scripts/cassandra.sh install'" >&2
	scripts/cassandra.sh install
fi

# The source read error tests mount scripts/faultfs.py (FUSE) with LIFELINE_FAULTFS_PYTHON.
eval "$(scripts/faultfs.sh env)"
if ! "$LIFELINE_FAULTFS_PYTHON" -c 'import fuse' >/dev/null 2>&1; then
	echo "test.sh: faultfs not found; installing it with 'scripts/faultfs.sh install'" >&2
	scripts/faultfs.sh install
fi

# Not `exec`: the EXIT trap must still stop the cluster; cargo's exit status becomes ours through it.
cargo test --workspace --locked --no-fail-fast "$@"
