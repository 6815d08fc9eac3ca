# syntax=docker/dockerfile:1
# The auditlog image: `auditlog serve` (default), `auditlog worker`, `auditlog migrate`.
# Build: docker build -t auditlog .     Run: see docker-compose.yml and deploy/README.md.

ARG PYTHON_IMAGE=python:3.12-slim

# ---- builder: the locked, production-only environment in /app/.venv ---------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install "uv>=0.9,<1"

WORKDIR /app

# Dependencies first (cached until pyproject.toml/uv.lock change), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

COPY app ./app
COPY analytics ./analytics
COPY db ./db
COPY jobs ./jobs
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# ---- runtime -------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 auditlog \
 && useradd --system --uid 10001 --gid auditlog --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin auditlog \
 && mkdir -p /data \
 && chown auditlog:auditlog /data

WORKDIR /app

# The venv (its interpreter links to /usr/local/bin/python3.12, identical in both stages) and the
# source it installs in editable mode from /app. Both stay owned by root: the service cannot modify them.
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/pyproject.toml /app/README.md ./
COPY --from=builder /app/app ./app
COPY --from=builder /app/analytics ./analytics
COPY --from=builder /app/db ./db
COPY --from=builder /app/jobs ./jobs
RUN python -m compileall -q app analytics db jobs

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUDIT_HOST=0.0.0.0 \
    AUDIT_PORT=8000 \
    AUDIT_DATA_DIR=/data

# /data: data dir (lake, export files); mount a volume there (shared by API and worker).
USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AUDIT_PORT', '8000'), timeout=4)"]

CMD ["auditlog", "serve"]
