# Sourced by the bench scripts: a throwaway PostgreSQL cluster in "$WORK/pg" on "$PORT", run as the postgres OS user
# when the script runs as root (initdb refuses root), stopped and removed on exit. Needs WORK and PORT set.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
SVC=
cleanup() {
  [ -n "$SVC" ] && kill "$SVC" 2>/dev/null && wait "$SVC" 2>/dev/null || true
  as_pg pg_ctl -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  [ -n "${EDBENCH_KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
chmod 755 "$WORK"

# start_cluster [server options...]: initdb, then start as the tests do (fsync off) plus the options given.
start_cluster() {
  mkdir -p "$WORK/pg"; [ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
  as_pg initdb -D "$WORK/pg" -U postgres -A trust >/dev/null
  as_pg pg_ctl -D "$WORK/pg" -l "$WORK/pg/log" -w start -o "-p $PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=off $*" >/dev/null
}
