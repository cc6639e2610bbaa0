# Stand-ins for the stack's third-party images, built from Debian packages on the local Python base
# (docker/smoke.sh only: it runs where Docker Hub is unreachable). One image, three programs:
#   redis-server (for redis:7-alpine), prometheus (for prom/prometheus), nginx (for nginx:*-alpine).
# Grafana is not packaged by Debian: the smoke runs the dashboard's queries against Prometheus instead.
ARG PYTHON_IMAGE=local/python:3.11-slim
FROM ${PYTHON_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       redis-server prometheus nginx-light \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
    && mkdir -p /prometheus
# the official prometheus image runs in /prometheus and keeps its data there
WORKDIR /prometheus
