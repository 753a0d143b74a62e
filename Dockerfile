# routerbot: `docker build -t routerbot .` then see docker-compose.yml.

# -- build: wheels for routerbot and everything it needs ---------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# -- runtime: the wheels, bubblewrap for the bash tool, a user without privileges --------
FROM python:3.11-slim
# bubblewrap jails the `bash` tool. In a container it needs user namespaces (the default
# seccomp profile of Docker 20.10+ allows them on most hosts); where the jail cannot
# start, the bot simply does not offer `bash` and logs why.
RUN apt-get update \
    && apt-get install --no-install-recommends -y bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/* && rm -rf /wheels
RUN useradd --create-home --uid 10001 routerbot \
    && mkdir -p /data && chown routerbot:routerbot /data
USER routerbot
WORKDIR /home/routerbot
ENV ROUTERBOT_DATA_DIR=/data \
    PORT=3000 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"3000\")}/healthz', timeout=4)"
STOPSIGNAL SIGTERM
CMD ["routerbot", "serve"]
