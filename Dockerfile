# Kustos: one image for every role (`kustos server`, `kustos operator run`, ...).
# Build: docker build -t kustos:dev .   (tests/unit/operator/test_image.py checks it statically)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# setup.py and scripts/generate_protos.py: the build generates the gRPC stubs
# (kustos/protos/*_pb2*.py, never committed) that kms-plugin and csi import.
COPY pyproject.toml setup.py README.md ./
COPY scripts/generate_protos.py ./scripts/generate_protos.py
COPY kustos ./kustos
RUN python -m venv /opt/kustos && /opt/kustos/bin/pip install --no-compile .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="kustos" \
      org.opencontainers.image.description="Secrets management for Kubernetes: server, operator, CLI" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/kustos/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 kustos \
 && useradd --system --uid 10001 --gid kustos --home-dir /data --shell /usr/sbin/nologin kustos \
 && mkdir -p /data && chown kustos:kustos /data
COPY --from=build /opt/kustos /opt/kustos
USER 10001:10001
WORKDIR /data
EXPOSE 8200 8080
ENTRYPOINT ["kustos"]
CMD ["--help"]
