# cnnserve container image, three stages:
#   build   - compiles bin/cnnserve for the generic x86-64 baseline (the Makefile adds no -march)
#   weights - takes $WEIGHTS_DIR/*.safetensors from the build context when there are any (offline build),
#             otherwise downloads and converts torchvision's checkpoints with `make weights` (needs internet)
#   runtime - debian:bookworm-slim with only the runtime libraries, a non-root user and the weights
#
#   docker build -t cnnserve .                                   # ./weights if it has files, else download
#   docker build --build-arg WEIGHTS_DIR=mydir -t cnnserve .     # any directory inside the context
#   docker build --build-arg WEIGHTS_SRC=download -t cnnserve .  # always download
# `make docker-test` builds it offline with ../shared/weights (see tests/deploy/docker_check.sh).

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config libopenblas-dev libjansson-dev libmicrohttpd-dev \
        libturbojpeg0-dev libjpeg-dev libpng-dev libwebp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY core/ core/
COPY models/ models/
COPY server/ server/
COPY openapi.yaml ./
RUN make -j"$(nproc)" bin/cnnserve && strip -o /cnnserve bin/cnnserve

FROM debian:bookworm-slim AS weights
# WEIGHTS_SRC: auto (local files if present, else download), local (fail without local files), download.
ARG WEIGHTS_SRC=auto
ARG WEIGHTS_DIR=weights
# The whole context (minus .dockerignore): the local weights directory is optional, and the download
# path needs the Makefile and deploy/convert_torchvision.py.
COPY . /ctx
RUN set -eu; mkdir -p /weights; \
    n_local=$(find "/ctx/$WEIGHTS_DIR" -maxdepth 1 -name '*.safetensors' 2>/dev/null | wc -l); \
    if [ "$WEIGHTS_SRC" != download ] && [ "$n_local" -gt 0 ]; then \
        echo "weights: copying $n_local local file(s) from $WEIGHTS_DIR"; \
        cp "/ctx/$WEIGHTS_DIR"/*.safetensors /weights/; \
    elif [ "$WEIGHTS_SRC" = local ]; then \
        echo "weights: WEIGHTS_SRC=local but no *.safetensors in $WEIGHTS_DIR" >&2; exit 1; \
    else \
        echo "weights: downloading and converting torchvision's checkpoints ($n_local local file(s), WEIGHTS_SRC=$WEIGHTS_SRC)"; \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            make curl ca-certificates python3 python3-torch python3-torchvision; \
        make -C /ctx weights || { echo "weights: download failed; to build offline put *.safetensors" \
            "into ./weights or pass --build-arg WEIGHTS_DIR=DIR (a directory inside the context)" >&2; exit 1; }; \
        cp /ctx/weights/*.safetensors /weights/; \
    fi; \
    ls -l /weights

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libopenblas0-pthread libjansson4 libmicrohttpd12 libjpeg62-turbo libpng16-16 libwebp7 curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 cnnserve \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin cnnserve
COPY --from=build /cnnserve /usr/local/bin/cnnserve
COPY --from=weights /weights/ /opt/cnnserve/weights/
# Every flag has a CNNSERVE_<FLAG> variable; compose/k8s override these.
ENV CNNSERVE_HOST=0.0.0.0 \
    CNNSERVE_PORT=8080 \
    CNNSERVE_WEIGHTS_DIR=/opt/cnnserve/weights \
    CNNSERVE_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# Shell form so a changed CNNSERVE_PORT is honoured.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${CNNSERVE_PORT}/readyz" || exit 1
ENTRYPOINT ["/usr/local/bin/cnnserve"]
CMD ["serve"]
