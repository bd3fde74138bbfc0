#!/usr/bin/env bash
# PostgreSQL for the team tracking server and its tests: install Debian's package when missing,
# start the cluster, create the role and the database that `make server` and tests/test_server.py
# use by default (postgresql://trainlab:trainlab@127.0.0.1:5432/trainlab).
# Idempotent: run it again and it changes nothing. Needs root (or sudo) for apt-get.
set -euo pipefail

ROLE="${TRAINLAB_PG_ROLE:-trainlab}"
PASSWORD="${TRAINLAB_PG_PASSWORD:-trainlab}"
DATABASE="${TRAINLAB_PG_DATABASE:-trainlab}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { as_root su postgres -c "$1"; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
fi

# The newest installed cluster (Debian creates `main` when the package is installed).
read -r version cluster _ < <(pg_lsclusters --no-header | sort -V | tail -1)
if [ -z "${version:-}" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    cluster=main
    as_root pg_createcluster "$version" "$cluster"
fi
if ! pg_lsclusters --no-header | grep -q "^$version *$cluster .*online"; then
    as_root pg_ctlcluster "$version" "$cluster" start
fi

cd /tmp  # su postgres cannot read the caller's folder
as_postgres "psql -v ON_ERROR_STOP=1 -q" <<SQL
SELECT 'CREATE ROLE $ROLE LOGIN CREATEDB'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')\gexec
ALTER ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASSWORD';
SELECT 'CREATE DATABASE $DATABASE OWNER $ROLE'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE')\gexec
SQL
echo "PostgreSQL $version/$cluster is up: postgresql://$ROLE:***@127.0.0.1:5432/$DATABASE"
