# syntax=docker/dockerfile:1
# deploybot's image: a build stage that installs the package into a virtualenv, and a small
# run stage holding that virtualenv, tini and a non-root user (uid 10001).
#
#   docker build -t deploybot .
#   docker run --env-file .env -p 3000:3000 \
#       -v "$PWD/config:/app/config:ro" -v deploybot-data:/app/data deploybot
#
# /app/config holds deploybot.yaml and the checklists it names (paths in it are relative to
# it); /app/data holds the SQLite file when DATABASE_URL is left at its default. The
# container runs the migrations, then the bot: HTTP on $PORT, or Socket Mode when
# SLACK_APP_TOKEN is set (/healthz, /readyz and /metrics stay on $PORT).

ARG PYTHON_IMAGE=python:3.11-slim

# -- build ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# pyproject names README.md as the package's readme: the build needs it.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY migrations ./migrations
# sandbox/ (the local stand-ins of deploybot sandbox) stays out of the image.
# A regular (not editable) install: the migrations ship inside the package, so
# `deploybot db upgrade` finds them from any working directory. pip and setuptools only
# build; the running bot needs neither.
RUN python -m venv /opt/deploybot \
    && /opt/deploybot/bin/pip install . \
    && /opt/deploybot/bin/python -m pip uninstall --yes pip setuptools

# -- run -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# tini as PID 1: it passes the stop signal on and reaps what command probes leave behind.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 deploybot \
    && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin deploybot \
    && mkdir -p /app/config /app/data \
    && chown 10001:10001 /app/data
# Same base image as the build stage, so the virtualenv's python link resolves.
COPY --from=build /opt/deploybot /opt/deploybot
COPY examples /app/examples
WORKDIR /app
ENV PATH=/opt/deploybot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000 \
    DATABASE_URL=sqlite:////app/data/deploybot.db \
    DEPLOYBOT_CONFIG=/app/config/deploybot.yaml \
    DEPLOYBOT_LOG_FORMAT=json
# Numeric, so that Kubernetes' runAsNonRoot can verify it without looking up a name.
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"]
# `deploybot serve` stops cleanly (scheduler, outbox, pending Slack updates) on SIGINT.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/bin/tini", "--"]
# Migrations first, then the bot; exec so that the stop signal reaches it.
CMD ["sh", "-c", "deploybot db upgrade && exec deploybot serve"]
