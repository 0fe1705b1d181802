# One image for all four services; the command picks which one runs:
#   docker build -t microshop:local .
#   docker run --rm -p 3000:3000 microshop:local                    # api-gateway
#   docker run --rm -p 3002:3002 microshop:local serve order-service
# Every setting is a MICROSHOP_* environment variable (see README.md).

# Build stage: a virtual environment holding microshop and its dependencies, installed from wheels.
FROM python:3.12-slim AS build
# A package mirror can be named at build time: --build-arg PIP_INDEX_URL=https://mirror/simple
# An offline build takes every wheel from ./wheelhouse instead (deploy/verify/image.sh makes it):
#   --network none --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse
ARG PIP_INDEX_URL
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ONLY_BINARY=:all:
WORKDIR /src
# pyproject.toml, README.md, src/ and a wheelhouse/ if there is one: .dockerignore keeps the rest out.
COPY . ./
# Only microshop itself is built here (by hatchling, in pip's throw-away build environment). pip
# (and setuptools, which venvs of Python < 3.12 carry) leave the venv: nothing needs them at run time.
# The `otel` extra exports traces over OTLP once OTEL_EXPORTER_OTLP_ENDPOINT is set (and costs
# nothing until then: without the variable no OpenTelemetry module is imported).
RUN python -m venv /opt/microshop \
    && /opt/microshop/bin/pip install --no-cache-dir --no-binary=microshop ".[otel]" \
    && /opt/microshop/bin/pip uninstall --yes pip setuptools

# Final stage: the base image, the venv and a non-root user; no compiler, no pip in the venv.
# No HEALTHCHECK: Kubernetes ignores it and probes /healthz and /readyz itself, and one image runs
# four services on four ports, which a single HEALTHCHECK command cannot tell apart.
#checkov:skip=CKV_DOCKER_2:Kubernetes probes /healthz and /readyz; the port depends on the service
FROM python:3.12-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="microshop" \
      org.opencontainers.image.description="A small microservices shop: api-gateway, order-service, payment-service and db in one image; run with 'microshop serve <service>'." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim"
RUN groupadd --system --gid 10001 microshop \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin microshop \
    && install --directory --owner=10001 --group=10001 --mode=0750 /data
COPY --from=build /opt/microshop /opt/microshop
# Bytecode was compiled at install time; the root filesystem may be read-only at run time.
ENV PATH=/opt/microshop/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MICROSHOP_DATA_DIR=/data \
    MICROSHOP_LOG_FORMAT=json
# Numeric, so that Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
# api-gateway, payment-service, order-service, db
EXPOSE 3000 3001 3002 3004
ENTRYPOINT ["microshop"]
CMD ["serve", "api-gateway"]
