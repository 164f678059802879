# One image recipe for all seven services. Build from the repository root:
#
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=trainer \
#     -t ghcr.io/modelfleet/trainer:dev .
#
# Only contracts/, libs/common/, services/$SERVICE/ and policies/ are copied in,
# so edits elsewhere in the monorepo don't invalidate this service's layers.
#
# EXTRA_PACKAGES adds pip requirements the deployment needs but the service
# does not declare, e.g. the fsspec driver of an object-store dataset store
# (FLEET_DATA_DIR=s3://bucket/modelfleet on ingest and trainer):
#
#   docker build ... --build-arg SERVICE=ingest --build-arg EXTRA_PACKAGES="s3fs==2026.9.0" .
# BASE: any Debian-like image whose `python` and `pip` are Python 3.11 (make compose-test
# builds on one made from Debian's packages, see deploy/compose/).
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG SERVICE
ARG EXTRA_PACKAGES=""
RUN test -n "$SERVICE" || { echo "build with --build-arg SERVICE=<ingest|trainer|evaluator|registry|deployer|monitor|serving>" >&2; exit 1; }

# No .pyc writes at run time (the root filesystem is read-only in Kubernetes),
# unbuffered logs, and /healthz, /readyz, /metrics on 0.0.0.0:8080: the
# service's default host, 127.0.0.1, is unreachable from outside the container.
#
# Paths, the same in docker-compose.yml and deploy/k8s (which mount volumes there):
# - FLEET_STATE_DIR: durable local state (idempotency records, projections).
# - FLEET_POLICY_DIR: the risk policies shipped below; Kubernetes can mount
#   others over them (see deploy/k8s/base/kustomization.yaml).
# - MPLCONFIGDIR: matplotlib (the evaluator's report) writes a font cache and
#   refuses a read-only config dir; /tmp is writable everywhere (an emptyDir in
#   Kubernetes).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLEET_HTTP_HOST=0.0.0.0 \
    FLEET_HTTP_PORT=8080 \
    FLEET_STATE_DIR=/var/lib/modelfleet/state \
    FLEET_POLICY_DIR=/opt/modelfleet/policies \
    MPLCONFIGDIR=/tmp/matplotlib \
    SERVICE_MODULE=modelfleet_${SERVICE}

# Fixed UID/GID 10001: the Kubernetes manifests run as it (runAsUser, fsGroup).
# The directories docker-compose.yml mounts named volumes on are owned by it,
# so a fresh volume (which takes the ownership of the directory it is mounted
# on) starts out writable: the dataset store, the state and the signing key.
RUN groupadd --system --gid 10001 fleet \
 && useradd --system --uid 10001 --gid fleet --create-home --home-dir /home/fleet \
      --shell /usr/sbin/nologin fleet \
 && install -d -o fleet -g fleet /data/datasets /var/lib/modelfleet/state /keys

WORKDIR /build
COPY contracts/ contracts/
COPY libs/common/ libs/common/
COPY services/${SERVICE}/ services/${SERVICE}/
# EXTRA_PACKAGES is unquoted on purpose (a space-separated list) and carries
# its own pins, which hadolint cannot see through the variable.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ./contracts ./libs/common "./services/${SERVICE}" ${EXTRA_PACKAGES}

# After the install, so editing a policy rebuilds only this layer. Owned by
# root: the service reads its policies and cannot change them.
COPY policies/ /opt/modelfleet/policies/

# Run from the user's home, away from /build, so the copied sources can't
# shadow the installed packages on sys.path.
WORKDIR /home/fleet
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['FLEET_HTTP_PORT'], timeout=3)"]

# The module name comes from the build arg, which exec-form CMD can't expand;
# `exec` makes python PID 1 so it receives SIGTERM itself.
CMD ["sh", "-c", "exec python -m \"$SERVICE_MODULE\""]
