# One image recipe for all seven services. Build from the repository root:
#
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=trainer \
#     -t ghcr.io/modelfleet/trainer:dev .
#
# Only contracts/, libs/common/ and services/$SERVICE/ are copied in, so edits
# elsewhere in the monorepo don't invalidate this service's layers.
FROM python:3.11-slim

ARG SERVICE
RUN test -n "$SERVICE" || { echo "build with --build-arg SERVICE=<ingest|trainer|evaluator|registry|deployer|monitor|serving>" >&2; exit 1; }

# No .pyc writes at run time (the root filesystem is read-only in Kubernetes),
# unbuffered logs, and /healthz, /readyz, /metrics on 0.0.0.0:8080: the
# service's default host, 127.0.0.1, is unreachable from outside the container.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLEET_HTTP_HOST=0.0.0.0 \
    FLEET_HTTP_PORT=8080 \
    SERVICE_MODULE=modelfleet_${SERVICE}

# Fixed UID/GID 10001: the Kubernetes manifests run as it (runAsUser, fsGroup).
# /data is owned by it so a fresh named volume mounted there (ingest's
# datasets and state in docker-compose.yml) starts out writable.
RUN groupadd --system --gid 10001 fleet \
 && useradd --system --uid 10001 --gid fleet --create-home --home-dir /home/fleet \
      --shell /usr/sbin/nologin fleet \
 && install -d -o fleet -g fleet /data

WORKDIR /build
COPY contracts/ contracts/
COPY libs/common/ libs/common/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN pip install --no-cache-dir ./contracts ./libs/common "./services/${SERVICE}"

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
