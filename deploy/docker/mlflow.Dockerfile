# The fleet's MLflow tracking server, behind its basic-auth app, and the command
# that creates the fleet's MLflow users (python -m modelfleet_common.mlflow_users).
# Build from the repository root:
#
#   docker build -f deploy/docker/mlflow.Dockerfile -t ghcr.io/modelfleet/mlflow:dev .
#
# MLflow's own image lacks the auth app's dependency (Flask-WTF, mlflow[auth]);
# same MLflow version as the services' client. Its backend store and users are
# in PostgreSQL (postgresql+psycopg://, psycopg 3 from modelfleet-common), and
# the image also runs `python -m modelfleet_common.postgres_roles` (compose's
# postgres-roles, the local overlay's Job).
# BASE: any Debian-like image whose `python` and `pip` are Python 3.11 (make compose-test
# builds on one made from Debian's packages, see deploy/compose/).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Fixed UID/GID 10001 like the services; owns /mlflow (database, artifacts, users).
RUN groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid mlflow --create-home --home-dir /home/mlflow \
      --shell /usr/sbin/nologin mlflow \
 && install -d -o mlflow -g mlflow /mlflow

WORKDIR /build
COPY contracts/ contracts/
COPY libs/common/ libs/common/
RUN pip install --no-cache-dir "mlflow[auth]==3.17.2" ./contracts "./libs/common[mlflow]"

WORKDIR /mlflow
USER 10001
EXPOSE 5000
CMD ["mlflow", "server", "--app-name", "basic-auth", "--host", "0.0.0.0", "--port", "5000"]
