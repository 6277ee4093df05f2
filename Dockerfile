# syntax=docker/dockerfile:1
# One image for every role; the arguments choose it:
#   docker run streamcart worker orders
#   docker run -p 8080:8080 streamcart gateway --host 0.0.0.0
#   docker run streamcart monitor
# The Redis URL comes from STREAMCART_REDIS_URL. Building needs BuildKit (the
# default builder of Docker and of Compose) for the bind mount below.

# The minor version and the Debian release are pinned; patch releases and
# security fixes arrive with a rebuild.
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A wheel of streamcart and of every dependency, so the runtime stage installs
# offline, exactly what was resolved here, with no sources or build tools.
RUN pip wheel --wheel-dir /wheels .


FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="streamcart" \
      org.opencontainers.image.description="An event-driven e-commerce backend on Redis Streams: worker pools, HTTP gateway and monitor." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# uid 10001 is what the Kubernetes manifests run as (runAsNonRoot); its home is
# the working directory, where `streamcart up` keeps the embedded server's data.
RUN groupadd --gid 10001 streamcart \
    && useradd --no-log-init --uid 10001 --gid 10001 --create-home \
        --home-dir /home/streamcart --shell /usr/sbin/nologin streamcart

# The wheels are mounted, not copied, so they add no layer to the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/streamcart-*.whl

WORKDIR /home/streamcart
USER 10001:10001

# The gateway's port (`streamcart gateway --host 0.0.0.0`).
EXPOSE 8080
# Workers, gateway and monitor all drain in-flight work on SIGTERM; give them
# time to (Compose: stop_grace_period, Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

ENTRYPOINT ["streamcart"]
CMD ["--help"]
