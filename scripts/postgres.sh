#!/usr/bin/env bash
# A throwaway PostgreSQL server for trying the production layout and for its tests (never assumes one runs).
#   scripts/postgres.sh start DIR PORT   initialise DIR if new, start on 127.0.0.1:PORT, create the databases
#   scripts/postgres.sh stop DIR         fast shutdown
#   scripts/postgres.sh install          only install the binaries (make test does, before its two workers start)
# Databases: prefect, mlflow and calmops (CalmOps' own shared state), owned by the role "calmops" (trust authentication on loopback only).
# Installs Debian's postgresql when its binaries are missing. Run as root, PostgreSQL runs as "postgres".
set -euo pipefail
cmd=${1:?usage: postgres.sh start DIR PORT | stop DIR | install}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$bindir" ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
[[ "$cmd" == install ]] && exit 0
dir=$(realpath -m "${2:?data directory}")
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  start)
    port=${3:?port}
    if [[ ! -f "$dir/PG_VERSION" ]]; then
      mkdir -p "$dir"
      [[ $(id -u) == 0 ]] && chown postgres: "$dir"
      as_pg test -x "$dir" || { echo "postgres.sh: the postgres user cannot reach $dir (check its parents' permissions)" >&2; exit 1; }
      as_pg "$bindir/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
    psql=(as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qtA -v ON_ERROR_STOP=1)
    "${psql[@]}" -c "DO \$\$BEGIN CREATE ROLE calmops LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$;"
    for db in prefect mlflow calmops; do
      if [[ -z $("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$db'") ]]; then
        "${psql[@]}" -c "CREATE DATABASE $db OWNER calmops"
      fi
    done
    echo "postgresql://calmops@127.0.0.1:$port"
    ;;
  stop)
    as_pg "$bindir/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
