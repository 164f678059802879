#!/bin/sh
# Entry point of postgres.Dockerfile: initdb on the first start (superuser postgres, password from
# POSTGRES_PASSWORD_FILE, POSTGRES_INITDB_ARGS), any host by SCRAM password, then the server in the
# foreground on PGPORT (default 5432), listening on POSTGRES_LISTEN_ADDRESSES (default: all).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  password_file=${POSTGRES_PASSWORD_FILE:?set POSTGRES_PASSWORD_FILE}
  waited=0
  until [ -s "$password_file" ]; do
    [ "$waited" -lt 60 ] || { echo "no password in $password_file after 60 s" >&2; exit 1; }
    sleep 1
    waited=$((waited + 1))
  done
  # shellcheck disable=SC2086
  # UTF-8 like the official image (its LANG is en_US.utf8); C.UTF-8 needs no locales package.
  initdb --username=postgres --pwfile="$password_file" --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-}
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec postgres -c listen_addresses="${POSTGRES_LISTEN_ADDRESSES:-*}" -c unix_socket_directories=/var/run/postgresql
