# The services image: `meetbot` for api, calendar-sync, scheduler, launcher, transcriber and
# delivery (the Deployment picks the subcommand). The bot image (bot.Dockerfile) adds Chromium.
# Build from the repository root:  docker build -f infra/docker/meetbot.Dockerfile -t meetbot .
# Runs as distroless's non-root user on a read-only root filesystem (the Deployments mount an
# in-memory /tmp and, for the transcriber, a models volume).

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p meetbot \
 && install -D target/release/meetbot /out/meetbot

# glibc, libstdc++ and libgcc (whisper.cpp is C++), CA certificates; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/meetbot /usr/local/bin/meetbot
USER 65532:65532
ENV HOME=/tmp \
    MEETBOT_TELEMETRY__LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/meetbot"]
CMD ["--help"]
