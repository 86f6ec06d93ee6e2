#!/usr/bin/env bash
# Best effort: a local PostgreSQL for the service's store tests. Prints the database URL on success; on any failure it
# prints nothing and those tests skip, saying why (the rest of CI does not depend on it).
set -u
{
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] || exit 0
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
  cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1" "$2}')
  [ -n "$cluster" ] || exit 0
  pg_ctlcluster $cluster start 2>/dev/null || pg_ctlcluster $cluster status >/dev/null || exit 0
  su postgres -c "psql -qc 'SELECT 1'" || exit 0
  su postgres -c "psql -qtc \"SELECT 1 FROM pg_roles WHERE rolname='$(id -un)'\"" | grep -q 1 \
    || su postgres -c "createuser -s $(id -un)"
  dropdb --if-exists noisecraft_ci && createdb noisecraft_ci || exit 0
} >/dev/null 2>&1
echo "postgresql+psycopg:///noisecraft_ci?host=/var/run/postgresql"
