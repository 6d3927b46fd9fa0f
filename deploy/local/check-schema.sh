#!/usr/bin/env bash
# Checks that the migrations and crates/repo/src/schema.rs agree, and that every migration
# reverts cleanly: a scratch database is migrated by platform-admin (the same embedded migrations
# the services run), `diesel print-schema` must reproduce schema.rs exactly, and
# `diesel migration redo --all` must take every migration down and up again.
#
#   check-schema.sh          check (make test runs this)
#   check-schema.sh --write  regenerate schema.rs after changing a migration
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCRATCH_DB=platform_schema_check
SCRATCH_URL=postgres://platform:platform@$PG_HOST:$PG_PORT/$SCRATCH_DB
SCHEMA_FILE=$ROOT/crates/repo/src/schema.rs

# Start from an empty database (the stack script created it, owned by platform).
psql -X -q -v ON_ERROR_STOP=1 "$SCRATCH_URL" \
    -c "DROP SCHEMA public CASCADE" -c "CREATE SCHEMA public" 2>&1 | grep -v NOTICE || true

cargo build --quiet -p platform-admin
DATABASE_URL=$SCRATCH_URL RUST_LOG=warn "$CARGO_TARGET_DIR/debug/platform-admin" migrate

printed=$(mktemp)
trap 'rm -f "$printed"' EXIT
diesel print-schema --database-url "$SCRATCH_URL" --config-file "$ROOT/crates/repo/diesel.toml" >"$printed"
if [ "${1:-}" = --write ]; then
    cp "$printed" "$SCHEMA_FILE"
    say "wrote $SCHEMA_FILE"
elif ! diff -u "$SCHEMA_FILE" "$printed"; then
    die "crates/repo/src/schema.rs does not match the migrations; run deploy/local/check-schema.sh --write"
fi

diesel migration redo --all --database-url "$SCRATCH_URL" --migration-dir "$ROOT/migrations" >/dev/null \
    || die "a migration does not revert cleanly (diesel migration redo --all failed)"
say "schema.rs matches the migrations, and every migration reverts cleanly"
