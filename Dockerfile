# mtrank serving image: FastAPI + onnxruntime, no PyTorch, no training code, no compiler.
#
#   docker build -t mtrank .                                            # the serving image
#   docker build -t mtrank-features --build-arg MTRANK_EXTRAS=serve,features .   # + pyarrow (features load)
#   docker run -p 8000:8000 -v "$PWD/models_store:/models:ro" mtrank    # serves the committed demo model
#
# Builds with the classic builder and with BuildKit alike, and pulls nothing but PYTHON_IMAGE (no
# `# syntax=` line, no `RUN --mount`). Stage 1 installs into a virtualenv; stage 2 copies only that
# virtualenv, so pip caches and the source tree never reach the runtime image.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A C compiler for service/_speedups.c (the C twins of /rank's hottest loops); only this stage has it,
# the runtime stage copies the built module. python:3.11-slim ships Python's headers; a Debian-python
# base does not, and gets them from python3-dev here.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && if ! python3 -c "import sysconfig, os, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"; \
       then apt-get install -y --no-install-recommends python3-dev; fi \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, read from pyproject.toml alone, so this layer is rebuilt only when they change,
# not on every source edit (.dockerignore keeps training/, tests/, models and data out of the context).
# MTRANK_EXTRAS: `serve` is the service; `serve,features` adds pyarrow for `python -m service features load`.
COPY pyproject.toml ./
ARG MTRANK_EXTRAS=serve
RUN python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [p['optional-dependencies'][e] for e in os.environ['MTRANK_EXTRAS'].split(',')]; \
print('\n'.join(p['dependencies'] + [r for extra in extras for r in extra]))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY README.md setup.py ./
COPY service ./service
# The C extension is optional for pip, required here; checked from / so that /src/service (the
# sources, no built module) does not shadow the installed package.
RUN pip install --no-deps . && pip check \
    && cd / && python -c "import service._speedups"
# The serving image must never contain torch: fail the build if a dependency pulled it in. The installers
# themselves are not needed at run time.
RUN python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    && pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MTRANK_MODELS_DIR=/models \
    MTRANK_LOG_FORMAT=json
# A system user with a home directory (onnxruntime and Python look for one); the model store is mounted
# read-only at /models and must be readable by uid 10001 (`training publish` writes it world-readable).
RUN groupadd --system --gid 10001 mtrank \
    && useradd --system --uid 10001 --gid mtrank --create-home --home-dir /home/mtrank \
       --shell /usr/sbin/nologin mtrank \
    && mkdir -p /models \
    && chown mtrank:mtrank /models
COPY --from=build /opt/venv /opt/venv
# Same torch check in the image that ships, plus an import of the app factory so a broken install fails here.
RUN python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    && python -c "import service.main, service._speedups"
USER mtrank
WORKDIR /home/mtrank
VOLUME ["/models"]
EXPOSE 8000
# python:3.11-slim has no curl; urlopen raises on a non-2xx answer or a refused connection.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# `serve` runs uvicorn on the app factory with every MTRANK_* setting, the request-head guard and the
# connection limits docs/deployment.md describes; with MTRANK_LOG_FORMAT=json every line is JSON.
CMD ["python", "-m", "service", "serve", "--host", "0.0.0.0", "--port", "8000"]
