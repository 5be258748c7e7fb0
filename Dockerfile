# syntax=docker/dockerfile:1
# Multi-stage build: a wheel is built in the first stage, installed into a venv in the second;
# the runtime image has no compiler and runs as an unprivileged user.

FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    CROUPIER_HOST=0.0.0.0 \
    CROUPIER_PORT=8000 \
    CROUPIER_DATA_DIR=/data
RUN python -m venv /opt/venv \
    && groupadd --system croupier \
    && useradd --system --gid croupier --home-dir /data --create-home croupier
COPY --from=build /dist/*.whl /tmp/
RUN /opt/venv/bin/pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
USER croupier
WORKDIR /data
EXPOSE 8000
# /readyz stays 200 while degraded (decisions are still served); /healthz is liveness.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# With CROUPIER_DATABASE_URL and CROUPIER_REDIS_URL set (see docker-compose.yml) it uses them;
# without, it starts embedded PostgreSQL and Redis under /data.
CMD ["croupier", "serve"]
