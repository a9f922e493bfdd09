#!/usr/bin/env bash
# Install the benchmark peers (restic, rustic), the kernel source used as the
# dataset, and GNU time. Idempotent: safe to run again; skips what is present.
set -euo pipefail

need_apt=()
command -v restic >/dev/null 2>&1 || need_apt+=(restic)
[ -x /usr/bin/time ] || need_apt+=(time)
# linux-source-6.1 ships the kernel tree as /usr/src/linux-source-6.1*.tar.xz.
compgen -G '/usr/src/linux-source-6.1*.tar.xz' >/dev/null || need_apt+=(linux-source-6.1)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)

if [ "${#need_apt[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists once; an install on a fresh machine needs it.
  apt-get update
  apt-get install -y "${need_apt[@]}"
fi

# rustic is not packaged by Debian: build it from crates.io. Low priority and a
# single job so that concurrent builds on this 2-core machine are not starved.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustic >/dev/null 2>&1; then
  echo "setup: building rustic-rs from crates.io (takes ~10+ minutes)..." >&2
  nice -n 19 cargo install rustic-rs --locked -j 1
fi

echo "setup: restic: $(restic version)"
echo "setup: rustic: $(rustic --version)"
echo "setup: kernel tarball: $(ls /usr/src/linux-source-6.1*.tar.xz)"
