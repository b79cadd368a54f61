# Multi-stage build of the production binary (no development stack, no simulators):
#   docker build -t changeflow:local .
# The same image runs the front door (`changeflow serve`) and workers (`changeflow worker`).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY activities activities
COPY bench bench
COPY credentials credentials
COPY devstack devstack
COPY engine engine
COPY mcp-frontend mcp-frontend
COPY migrations migrations
COPY policy policy
COPY simulators simulators
COPY src src
COPY tests tests
COPY workflows workflows
RUN cargo build --release --locked --no-default-features --bin changeflow

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/changeflow --create-home changeflow \
 && install -d -o changeflow /var/lib/changeflow/snapshots
COPY --from=build /src/target/release/changeflow /usr/local/bin/changeflow
COPY policy /etc/changeflow/policy
USER changeflow
WORKDIR /var/lib/changeflow
ENV CHANGEFLOW_DATA_DIR=/var/lib/changeflow \
    CHANGEFLOW_POLICY_DIR=/etc/changeflow/policy \
    CHANGEFLOW_LOG_FORMAT=json
ENTRYPOINT ["changeflow"]
CMD ["--help"]
