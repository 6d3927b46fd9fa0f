#!/usr/bin/env bash
# `make contract`: the gateway's contract test. Schemathesis (from PyPI, pinned, installed once
# into .stack/tools) reads the OpenAPI document the running gateway serves and sends it
# generated requests, valid and invalid, for every operation: examples, boundary values,
# fuzzing and stateful sequences (a created campaign's ID used in signups). It fails on any
# 5xx, any answer whose status, content type, headers or body the document does not describe,
# and any schema-violating request accepted.
#
# Not checked: whether every schema-valid request is accepted (`positive_data_acceptance`).
# Much of what the API refuses depends on state or secrets no schema can express: referral
# codes and verification tokens of this campaign, cursors it gave out, timestamps within the
# retention, addresses the mailer can send to.
#
# Every request carries an operator's token: a platform admin client with every service scope,
# registered on the local stack's database, so the operations of services, admins and campaign
# owners are exercised past their door (those of signed-in users and participants answer it
# 403 and 401, as the document says; their own tests are in crates/system-tests).
#
# Needs a running gateway (`make dev`); GATEWAY_URL, CONTRACT_TOKEN (instead of registering
# a client), CONTRACT_EXAMPLES (per operation and phase, default 100) and CONTRACT_SEED (default
# fixed, so a run can be repeated) adjust it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

SCHEMATHESIS_VERSION=4.32.5
GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:8080}
TOOLS=$STACK_DIR/tools
VENV=$TOOLS/schemathesis-$SCHEMATHESIS_VERSION

if [ ! -x "$VENV/bin/st" ]; then
    say "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $VENV"
    command -v python3 >/dev/null || die "python3 is needed for schemathesis"
    if ! python3 -m venv --help >/dev/null 2>&1; then apt_install python3-venv; fi
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

token=${CONTRACT_TOKEN:-}
if [ -z "$token" ]; then
    say "registering an operator client for the contract test"
    scopes="admin activity:write activity:read registrations:bulk"
    client=$("$ROOT/deploy/local/platform-admin.sh" create-client --name "contract test" \
        --scope admin --scope activity:write --scope activity:read --scope registrations:bulk)
    json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
    token=$(NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost curl -fsS \
        -u "$(json_field client_id <<<"$client"):$(json_field client_secret <<<"$client")" \
        -d grant_type=client_credentials --data-urlencode "scope=$scopes" \
        "$GATEWAY_URL/oauth2/token" | json_field access_token)
fi

say "contract test: schemathesis against $GATEWAY_URL/api/v1/openapi.json"
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
# No proxy for the local gateway, whatever the environment says. Run from .stack/tools:
# schemathesis keeps its cache (.schemathesis/) in the working directory.
set +e
cd "$TOOLS"
NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
"$VENV/bin/st" run "$GATEWAY_URL/api/v1/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $token" \
    --exclude-checks positive_data_acceptance \
    --max-examples "${CONTRACT_EXAMPLES:-100}" \
    --seed "${CONTRACT_SEED:-20261130}" \
    --workers 2 \
    --wait-for-schema 30 \
    --request-timeout 30 \
    --no-color \
    --report junit --report-dir "$report" \
    | tee "$report/output.txt" | grep -v '^\s*$' | tail -25
status=${PIPESTATUS[0]}
set -e
generated=$(grep -Eo '[0-9]+ generated' "$report/output.txt" | tail -1 || true)
say "schemathesis: ${generated:-no} test cases, exit status $status"
exit "$status"
