# incident-bot: a slim image running `incident-bot serve` as a non-root user.
#   docker build -t incident-bot .
#   docker run -p 8080:8080 -e SLACK_BOT_TOKEN=... -e SLACK_SIGNING_SECRET=... \
#     -e INCIDENT_BOT_CHANNEL=C0123ABCD incident-bot

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN python -m venv /opt/incident-bot \
 && /opt/incident-bot/bin/pip install --upgrade pip \
 && /opt/incident-bot/bin/pip install ".[graphs,postgres]"

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="incident-bot" \
      org.opencontainers.image.description="Alertmanager to Slack incident response for teams running models in production"
ENV PATH=/opt/incident-bot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    INCIDENT_BOT_DATABASE_URL=sqlite:////data/incident-bot.db \
    INCIDENT_BOT_RUNBOOKS_DIR=/app/runbooks
RUN groupadd --system --gid 10001 bot \
 && useradd --system --uid 10001 --gid bot --home-dir /app --shell /usr/sbin/nologin bot \
 && mkdir -p /data /app \
 && chown bot:bot /data
COPY --from=build /opt/incident-bot /opt/incident-bot
COPY runbooks /app/runbooks
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["incident-bot"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
