# syntax=docker/dockerfile:1
# Build stage: a wheel and its dependencies, with the compilers kept out of the final image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY migrations ./migrations
RUN python -m venv /opt/deploybot && /opt/deploybot/bin/pip install --no-cache-dir .

# Run stage: the virtualenv only, as a non-root user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 deploybot
COPY --from=build /opt/deploybot /opt/deploybot
COPY examples /app/examples
WORKDIR /app
ENV PATH=/opt/deploybot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PORT=3000 \
    DATABASE_URL=sqlite:////app/data/deploybot.db \
    DEPLOYBOT_CONFIG=/app/deploybot.yaml
RUN mkdir -p /app/data && chown deploybot /app/data
USER deploybot
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"
# Migrations first, then the bot; exec so that signals reach it.
CMD ["sh", "-c", "deploybot db upgrade && exec deploybot serve"]
