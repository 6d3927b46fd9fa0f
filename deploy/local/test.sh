#!/usr/bin/env bash
# `make test`: every check, against the real PostgreSQL and broker of the local stack.
#   1. the stack (started here if it is not running, and stopped again afterwards if so)
#   2. cargo fmt --check, clippy with -D warnings, schema.rs against the migrations, the
#      deployment files (deploy/check.sh)
#   3. the whole test suite (unit tests, and integration tests on the real servers), the
#      broker-failure tests (three-node clusters of their own) last, with their counts shown,
#      and the consent page clicked through in Chromium, with the path of its screenshot
#   4. a smoke run of `make dev` / `make stop`: all seven services ready, the contract test
#      (deploy/local/contract.sh: schemathesis against the running gateway), then a clean SIGTERM
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/services.sh"
cd "$ROOT"

broker_was_running=
listening "$KAFKA_ADDR" && broker_was_running=1
dev_was_running=
for entry in "${SERVICES[@]}"; do
    [ -f "$RUN_DIR/${entry%%:*}.pid" ] && dev_was_running=1
done
cleanup() {
    # Leave the machine as we found it: stop the broker only if this run started it.
    if [ -z "$broker_was_running" ]; then "$ROOT/deploy/local/stack.sh" down; fi
}
trap cleanup EXIT

"$ROOT/deploy/local/stack.sh" up

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy -D warnings"
cargo clippy --quiet --workspace --all-targets -- -D warnings

say "schema.rs against the migrations"
"$ROOT/deploy/local/check-schema.sh"

say "deployment files (make deploy-check)"
"$ROOT/deploy/check.sh"

say "cargo test"
export TEST_DATABASE_URL KAFKA_BROKERS=$KAFKA_ADDR
# The broker-failure tests run last, alone, with their counts shown (sent, completed,
# duplicates, dead letters): each starts a three-node Kafka cluster of its own.
cargo test --workspace -- --skip registrations_complete_once_while_a_ --skip chromium_clicks_through_
say "broker failures on three-node Apache Kafka clusters"
cargo test -p system-tests --test broker_failures -- --show-output
say "the consent page in headless Chromium (its screenshot: target/oauth2-consent-page.png)"
cargo test -p system-tests --test oauth2 chromium_clicks_through_ -- --show-output

if [ -n "$dev_was_running" ]; then
    say "make dev is running: skipping the dev/stop smoke run; contract test against it"
    "$ROOT/deploy/local/contract.sh"
else
    say "smoke run: make dev, the contract test against its gateway, then make stop"
    "$ROOT/deploy/local/dev.sh"
    "$ROOT/deploy/local/contract.sh"
    "$ROOT/deploy/local/stop.sh" --keep-stack
fi
say "all checks passed"
