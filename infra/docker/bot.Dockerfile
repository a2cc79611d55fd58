# The bot image: `meetbot bot` plus Debian's Chromium for Meet, Teams and Zoom meetings.
# Build from the repository root:  docker build -f infra/docker/bot.Dockerfile -t meetbot-bot .
# Runs as a non-root user on a read-only root filesystem; the Kubernetes Job template mounts an
# in-memory /tmp (the Chromium profile of each session lives there and goes with the pod).

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p meetbot \
 && install -D target/release/meetbot /out/meetbot

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      chromium fonts-liberation ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 meetbot \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin meetbot
COPY --from=build /out/meetbot /usr/local/bin/meetbot
USER 10001:10001
ENV HOME=/tmp \
    MEETBOT_BOT__BROWSER__CHROMIUM=/usr/bin/chromium \
    MEETBOT_TELEMETRY__LOG_FORMAT=json
# tini reaps Chromium's children and forwards the launcher's SIGTERM to the bot.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/meetbot"]
CMD ["bot"]
