#!/usr/bin/env bash
# `make dev`: the local stack plus all seven services, in the background, with logs in
# .stack/logs/<service>.log. Returns once every service answers /readyz with 200; `make stop`
# stops them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/services.sh"

"$ROOT/deploy/local/stack.sh" up

say "building the services"
cargo build --quiet --bins

export DATABASE_URL=$DEV_DATABASE_URL KAFKA_BROKERS=$KAFKA_ADDR HTTP_ADDR=$GATEWAY_HTTP_ADDR
# Waitlist: verification tokens shared by the gateway and the email-worker; with no SMTP_URL the
# email- and reward-workers write each email as an .eml file here.
# The key is generated once per checkout (32 random bytes, hex) and kept in .stack.
if [ -z "${VERIFICATION_SECRET:-}" ]; then
    key_file=$STACK_DIR/verification-secret
    if [ ! -s "$key_file" ]; then
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$key_file")
    fi
    VERIFICATION_SECRET=$(cat "$key_file")
fi
export VERIFICATION_SECRET
# The gateway's OAuth2 key secret (seals the ID token signing keys), generated the same way.
if [ -z "${OAUTH2_KEY_SECRET:-}" ]; then
    key_file=$STACK_DIR/oauth2-key-secret
    if [ ! -s "$key_file" ]; then
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$key_file")
    fi
    OAUTH2_KEY_SECRET=$(cat "$key_file")
fi
export OAUTH2_KEY_SECRET
export EMAIL_OUTBOX_DIR=${EMAIL_OUTBOX_DIR:-$ROOT/.stack/email-outbox}
# Phone verification codes: each text message as a .txt file here (no SMS provider locally).
export SMS_OUTBOX_DIR=${SMS_OUTBOX_DIR:-$ROOT/.stack/sms-outbox}
# Webhook receivers you run on this machine are on the loopback interface.
export WEBHOOK_ALLOW_PRIVATE_NETWORKS=${WEBHOOK_ALLOW_PRIVATE_NETWORKS:-true}
export RUST_LOG=${RUST_LOG:-info,rdkafka=warn} LOG_FORMAT=${LOG_FORMAT:-text}

for entry in "${SERVICES[@]}"; do
    name=${entry%%:*}
    port=${entry##*:}
    if [ -f "$RUN_DIR/$name.pid" ] && kill -0 "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null; then
        say "$name is already running"
        continue
    fi
    rm -f "$RUN_DIR/$name.exit"
    # A detached shell runs the service and records its exit code, so `make stop` can tell a
    # clean exit from a failure.
    OPS_ADDR=127.0.0.1:$port setsid bash -c '
        "$1" >>"$2" 2>&1 </dev/null &
        echo $! >"$3.pid"
        wait $!
        echo $? >"$3.exit"
    ' _ "$CARGO_TARGET_DIR/debug/$name" "$LOG_DIR/$name.log" "$RUN_DIR/$name" \
        </dev/null >/dev/null 2>&1 &
done

say "waiting for every service to be ready"
failed=0
for entry in "${SERVICES[@]}"; do
    name=${entry%%:*}
    port=${entry##*:}
    ready=
    for _ in $(seq 600); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then ready=1; break; fi
        [ -f "$RUN_DIR/$name.exit" ] && break
        sleep 0.1
    done
    if [ -n "$ready" ]; then
        printf '  %-24s ready   http://127.0.0.1:%s/readyz\n' "$name" "$port"
    else
        printf '  %-24s FAILED  (last lines of %s:)\n' "$name" "$LOG_DIR/$name.log"
        tail -n 15 "$LOG_DIR/$name.log" | sed 's/^/      /'
        failed=1
    fi
done
[ "$failed" = 0 ] || die "some services are not ready; see $LOG_DIR (make stop stops the rest)"
say "all services ready; the API is at http://$GATEWAY_HTTP_ADDR; logs in $LOG_DIR; stop with make stop"
