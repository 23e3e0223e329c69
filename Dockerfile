# syntax=docker/dockerfile:1
# pql-streams worker image: `docker build -t pql-streams .`
#
# Base: the official Python image, pinned to an exact patch release and Debian release
# (python:3.11.14-slim-bookworm). It is pinned by tag, not by digest: a digest would also freeze
# out Debian security rebuilds of the same tag. Pin a digest in your own registry mirror if your
# policy requires one (FROM python:3.11.14-slim-bookworm@sha256:...).

# ---- build: a wheel for pql-streams and wheels for all of its dependencies -------------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
RUN python -m pip wheel --wheel-dir /wheels .

# ---- runtime: no compilers, no pip cache, no source tree; runs as an unprivileged user --------
FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="pql-streams" \
      org.opencontainers.image.description="Real-time Product-Qualified Lead detection on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HOME=/var/lib/pql \
    PQL_DATA_DIR=/var/lib/pql \
    PQL_WEB_PORT=6066

# A fixed, high, numeric uid/gid so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 pql \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/pql --shell /usr/sbin/nologin pql \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/pql

# The wheels are bind-mounted from the build stage, so they never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels /wheels/pql_streams-*.whl \
    && pql --version

# RocksDB tables (a cache of the changelog topics) live here; mount a persistent volume.
VOLUME ["/var/lib/pql"]
WORKDIR /var/lib/pql
USER 10001:10001

# /healthz, /readyz and /metrics on the worker's web port.
EXPOSE 6066

# Liveness only (/healthz): recovery from the changelog can take minutes, readiness is /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PQL_WEB_PORT', '6066'), timeout=4).close()"]

# The worker commits, flushes and closes RocksDB on SIGTERM (budget: 30 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["pql"]
CMD ["worker"]
