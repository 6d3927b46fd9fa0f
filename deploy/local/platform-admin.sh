#!/usr/bin/env bash
# platform-admin on the local stack's database and broker (the ones `make dev` uses), e.g.
#   deploy/local/platform-admin.sh create-client --name ops --scope admin
#   deploy/local/platform-admin.sh oauth2-audit-log --limit 20
# Builds it first when needed; log lines go to stderr, what it prints to stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
cargo build --quiet -p platform-admin
DATABASE_URL=$DEV_DATABASE_URL KAFKA_BROKERS=${KAFKA_BROKERS:-$KAFKA_ADDR} RUST_LOG=${RUST_LOG:-warn} \
    "$CARGO_TARGET_DIR/debug/platform-admin" "$@"
