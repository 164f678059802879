# PostgreSQL from Debian's package (bookworm: 15), set up like the official postgres image as far
# as docker-compose.yml uses it: POSTGRES_PASSWORD_FILE (the superuser's) and
# POSTGRES_INITDB_ARGS on the first start, data in /var/lib/postgresql/data, user 999.
# docker-compose.yml runs postgres:16-bookworm; this one is for machines that cannot pull it:
# `make compose-test` builds it on its Debian base.
#
#   docker build -f deploy/docker/postgres.Dockerfile -t modelfleet-postgres deploy/docker
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# UID/GID 999 like the official image (docker-compose.yml's postgres-credentials chowns the
# superuser's password file to it); no cluster made at install: the entry point makes one.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 postgres \
 && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/sh postgres \
 && mkdir -p /etc/postgresql-common \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres /var/lib/postgresql/data /var/run/postgresql

COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    LANG=C.UTF-8 \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["/bin/sh", "/usr/local/bin/postgres-entrypoint.sh"]
