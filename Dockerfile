# syntax=docker/dockerfile:1
# mtrank serving image: FastAPI + onnxruntime, no PyTorch, no training code.
#
#   docker build -t mtrank .
#   docker run -p 8000:8000 -v "$PWD/models_store:/models:ro" -e MTRANK_MODEL=feed mtrank
#
# Stage 1 installs the `serve` extra into a virtualenv; stage 2 copies only that virtualenv, so compilers,
# pip caches and the source tree never reach the runtime image.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the serving wheel needs (.dockerignore keeps training/, tests/ and data out of the context).
COPY pyproject.toml README.md ./
COPY service ./service
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip \
    && pip install ".[serve]"
# The serving image must never contain torch: fail the build if a dependency pulled it in.
RUN python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torch') is not None)"

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MTRANK_MODELS_DIR=/models
RUN groupadd --system --gid 10001 mtrank \
    && useradd --system --uid 10001 --gid mtrank --no-create-home --shell /usr/sbin/nologin mtrank \
    && mkdir -p /models \
    && chown mtrank:mtrank /models
COPY --from=build /opt/venv /opt/venv
# Same torch check in the image that ships, plus an import of the app factory so a broken install fails here.
RUN python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    && python -c "import service.main"
USER mtrank
WORKDIR /app
VOLUME ["/models"]
EXPOSE 8000
# python:3.11-slim has no curl; urlopen raises on a non-2xx answer or a refused connection.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# create_app() with no arguments reads its settings from MTRANK_* environment variables.
CMD ["uvicorn", "--factory", "service.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
