#!/usr/bin/env bash
# Prepare the benchmark dataset under bench/work/data (git-ignored, never
# committed). Idempotent: each artefact is built once and reused.
#
#   linux-source-6.1/   the Debian kernel source tree (~1.5 GB, ~78,600 files)
#   big-<size>.img      a database-image-like single file for the stdin test
#
# big.img layout (deterministic for a given kernel tarball): four equal
# segments S1 S2 S1 S3. Each segment alternates 3 MiB of kernel source text
# (from a name-sorted tar of the tree; compresses ~4-5x with zstd) with 1 MiB
# of seeded pseudo-random bytes (incompressible). So ~75% compressible text,
# ~25% random, and the third quarter repeats the first (dedup opportunity),
# much like a database file with hot/cold pages and copied extents.
#
# Usage: bench/dataset.sh [BIG_MIB]   (default 1024; must be a multiple of 16)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
data="$here/work/data"
big_mib="${1:-1024}"
tree="$data/linux-source-6.1"
mkdir -p "$data"

if (( big_mib % 16 != 0 || big_mib < 16 )); then
  echo "dataset: BIG_MIB must be a positive multiple of 16, got $big_mib" >&2
  exit 2
fi

# --- kernel tree -------------------------------------------------------------
if [ ! -e "$data/.linux-source-6.1.extracted" ]; then
  tarball="$(ls /usr/src/linux-source-6.1*.tar.xz 2>/dev/null | head -n1 || true)"
  if [ -z "$tarball" ]; then
    echo "dataset: no /usr/src/linux-source-6.1*.tar.xz; run bench/setup.sh first" >&2
    exit 1
  fi
  echo "dataset: extracting $tarball ..." >&2
  rm -rf "$tree" "$tree.tmp"
  mkdir -p "$tree.tmp"
  # Extract into a temp dir and rename, so an interrupted run is not reused.
  nice -n 10 tar -xJf "$tarball" -C "$tree.tmp" --strip-components=1
  mv "$tree.tmp" "$tree"
  # Marker outside the tree so the measured data is exactly the kernel source.
  touch "$data/.linux-source-6.1.extracted"
fi

# --- big single file -----------------------------------------------------------
big="$data/big-${big_mib}MiB.img"
if [ ! -e "$big" ]; then
  seg=$(( big_mib / 4 ))              # MiB per segment
  text_need=$(( seg * 3 / 4 * 3 ))    # MiB of text for S1, S2, S3
  text="$data/kernel-text.tar"
  echo "dataset: building $big (${big_mib} MiB) ..." >&2
  # Name-sorted, fixed-owner tar so the byte stream is reproducible.
  tar -C "$tree" --sort=name --owner=0 --group=0 --numeric-owner -cf - . \
    | head -c "$(( text_need * 1024 * 1024 ))" > "$text" || true
  python3 - "$text" "$big.tmp" "$seg" <<'PY'
import random, sys
text_path, out_path, seg_mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
MiB = 1 << 20
text = open(text_path, "rb").read()
seg_text = seg_mib * 3 // 4 * MiB
if len(text) < 3 * seg_text:
    sys.exit(f"dataset: kernel text too short ({len(text)} bytes)")

def segment(idx):
    """3 MiB text + 1 MiB seeded random, repeated to fill one segment."""
    rng = random.Random(1000 + idx)
    src = text[idx * seg_text:(idx + 1) * seg_text]
    parts, off = [], 0
    for _ in range(seg_mib // 4):
        parts.append(src[off:off + 3 * MiB]); off += 3 * MiB
        parts.append(rng.randbytes(MiB))
    return b"".join(parts)

s1 = segment(0)
with open(out_path, "wb") as f:
    f.write(s1); f.write(segment(1)); f.write(s1); f.write(segment(2))
PY
  mv "$big.tmp" "$big"
  rm -f "$text"
fi

echo "$tree"
echo "$big"
