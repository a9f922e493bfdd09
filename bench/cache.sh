# Page-cache policy shared by the benchmarks (sourced, not run).
# Cold cache is fairest (no tool profits from what the previous one read), but needs root and a
# writable /proc/sys; otherwise fall back to a warm cache that every tool sees alike, primed once by an
# untimed full read of the data.
#   cache_policy NAME PATH...   sets CACHE (cold|warm) and cache_note; reads PATHs to prime a warm cache
#   drop_caches                 before every timed phase (no-op when warm)

drop_caches() {
  [ "$CACHE" = cold ] || return 0
  sync
  echo 3 > /proc/sys/vm/drop_caches
}

cache_policy() {
  local name="$1"; shift
  if [ "$CACHE" = cold ] && ! (sync && echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    echo "$name: cannot drop the page cache; measuring with a warm cache" >&2
    CACHE=warm
  fi
  if [ "$CACHE" = warm ]; then
    local p
    for p in "$@"; do
      # Pipe through cat: GNU tar skips reading file data when it sees /dev/null.
      if [ -d "$p" ]; then tar -cf - -C "$p" . | cat > /dev/null; else cat "$p" > /dev/null; fi
    done
    cache_note="warm page cache: never dropped; one untimed read of the data primed it before the first tool, so every tool saw the same warm cache"
  else
    cache_note="cold page cache: \`sync; echo 3 > /proc/sys/vm/drop_caches\` before every timed phase"
  fi
}
