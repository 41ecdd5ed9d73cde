#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite, from Debian's installed `postgresql` package.
#   scripts/pg-test.sh start     -> prints the SQLAlchemy URL on stdout (and writes it to <state>/url)
#   scripts/pg-test.sh stop      -> stops the cluster and removes its files
#   scripts/pg-test.sh restart   -> `pg_ctl restart -m fast`: every session is cut, the cluster comes back on its port
#   scripts/pg-test.sh down      -> `pg_ctl stop -m fast`, keeping the files (the database "goes away")
#   scripts/pg-test.sh up        -> starts a cluster that is `down` again, on the same port
# The cluster's files live in a fresh folder under /tmp (reachable by the `postgres` system user, which
# owns them when we run as root: PostgreSQL refuses to run as root); the state folder records where, and
# the URL. It is .pgtest/ by default; PGTEST_STATE=DIR names another, so that a test can run a cluster of
# its own (to restart it) without disturbing the suite's shared one.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
state="${PGTEST_STATE:-$here/.pgtest}"
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"

as_pg() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

need_cluster() {
  if [ -z "$bindir" ]; then
    echo "PostgreSQL server binaries not found: apt-get install -y postgresql" >&2; exit 1
  fi
  if [ ! -f "$state/dir" ] || [ ! -f "$state/port" ]; then
    echo "no throwaway cluster recorded in $state: run '$0 start' first" >&2; exit 1
  fi
  dir="$(cat "$state/dir")"; port="$(cat "$state/port")"
}

server_options() {
  echo "-p $1 -k $2 -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
}

case "${1:-}" in
  start)
    if [ -z "$bindir" ]; then
      echo "PostgreSQL server binaries not found: apt-get install -y postgresql" >&2; exit 1
    fi
    if [ -f "$state/url" ] && as_pg "$bindir/pg_ctl" -D "$(cat "$state/dir")/data" status >/dev/null 2>&1; then
      cat "$state/url"; exit 0
    fi
    rm -rf "$state"; mkdir -p "$state"
    dir="$(mktemp -d /tmp/clinreason-pgtest.XXXXXX)"; chmod 755 "$dir"; echo "$dir" > "$state/dir"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
    echo "$port" > "$state/port"
    if [ "$(id -u)" = "0" ]; then chown postgres:postgres "$dir"; fi
    as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(server_options "$port" "$dir")" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres clinreason_test
    url="postgresql+psycopg://postgres@127.0.0.1:$port/clinreason_test"
    echo "$url" > "$state/url"
    echo "$url"
    ;;
  stop)
    if [ -f "$state/dir" ]; then
      dir="$(cat "$state/dir")"
      as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
      rm -rf "$dir"
    fi
    rm -rf "$state"
    ;;
  restart)
    need_cluster
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 -o "$(server_options "$port" "$dir")" \
      restart >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
    ;;
  down)
    need_cluster
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
    ;;
  up)
    need_cluster
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(server_options "$port" "$dir")" \
      start >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
    ;;
  *)
    echo "usage: $0 start|stop|restart|down|up   (PGTEST_STATE=DIR: a cluster of its own)" >&2; exit 2 ;;
esac
