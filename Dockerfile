# streamon worker image: `streamon <command>` (worker, simulate, alert-router, replay, ...).
#
#   docker build -t streamon .
#   docker run --rm streamon check-config /etc/streamon/config.yaml
#   docker run --rm -v streamon-state:/var/lib/streamon streamon \
#       worker --config /etc/streamon/config.yaml --bootstrap-servers kafka:9092
#
# Used by docker-compose.yml (workers, simulator, alert router) and deploy/k8s/.
# No HEALTHCHECK here: only `streamon worker` serves /healthz (on monitoring.prometheus.port);
# docker-compose.yml and the Kubernetes probes check it where a worker runs.

# ---- build: a wheel of streamon and of every dependency (all 58 have cp311 manylinux wheels
# for linux/amd64, checked with `pip install --dry-run --only-binary=:all:`;
# confluent-kafka bundles librdkafka, rocksdict bundles RocksDB; no compiler needed).
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamon ./streamon
RUN pip wheel --wheel-dir /wheels .

# ---- runtime
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    STREAMON_STATE_DIR=/var/lib/streamon
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels streamon \
 && streamon --version

# A fixed, non-root uid/gid (10001), so volume ownership and Kubernetes' runAsUser agree.
RUN groupadd --system --gid 10001 streamon \
 && useradd --system --uid 10001 --gid streamon --home-dir /var/lib/streamon --shell /usr/sbin/nologin streamon \
 && mkdir -p /var/lib/streamon /etc/streamon \
 && chown streamon:streamon /var/lib/streamon

# The example configurations: the CLI's default --config (configs/monitoring_config.yaml) works
# from the working directory, and /etc/streamon/config.yaml is a valid default that
# docker-compose.yml and the Kubernetes ConfigMap replace.
WORKDIR /opt/streamon
COPY configs/ ./configs/
COPY configs/monitoring_config.yaml /etc/streamon/config.yaml

USER 10001:10001
# The RocksDB join stores (restorable from Kafka, but a kept volume makes restarts fast).
VOLUME ["/var/lib/streamon"]
# /metrics, /healthz, /readyz of `streamon worker` (monitoring.prometheus.port).
EXPOSE 8080
ENTRYPOINT ["streamon"]
CMD ["--help"]
