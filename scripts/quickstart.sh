#!/usr/bin/env bash
# lifeline's main job on a fresh machine: build, create a local repository, back up a directory,
# list what was saved, restore it and prove the restore equals the source.
# Usage: scripts/quickstart.sh [DIRECTORY]   (default: this project's own source tree)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(realpath "${1:-crates}")
work=${LIFELINE_QUICKSTART_DIR:-$PWD/target/quickstart}

cargo build --release --locked --quiet
bin=$PWD/target/release/lifeline

rm -rf "$work" && mkdir -p "$work"
# A generated password in a 0600 file: the documented way to pass one non-interactively.
(umask 077 && head -c 24 /dev/urandom | base64 > "$work/password")
export LIFELINE_REPO=$work/repo LIFELINE_PASSWORD_FILE=$work/password

"$bin" init
"$bin" backup "$src" --tag job=quickstart
"$bin" backup "$src" --tag job=quickstart   # unchanged re-run: nothing new is read or stored
"$bin" snapshots
"$bin" ls latest | head -n 10
"$bin" restore latest --target "$work/restore"
"$bin" check --read-data
diff -r "$src" "$work/restore$src" && echo "restore of $src is identical to the source"
echo "repository: $LIFELINE_REPO (password in $LIFELINE_PASSWORD_FILE)"
