#!/usr/bin/env bash
# `make stop`: SIGTERM to every service `make dev` started, then the broker if the stack script
# started it (not with --keep-stack). Fails when a service does not exit cleanly (exit code 0)
# within 15 seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/services.sh"

pids=()
for entry in "${SERVICES[@]}"; do
    name=${entry%%:*}
    pidfile=$RUN_DIR/$name.pid
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        pids+=("$name:$pid")
    fi
done

failed=0
for entry in "${pids[@]}"; do
    name=${entry%%:*}
    pid=${entry##*:}
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        printf '  %-24s still running 15s after SIGTERM; killing it\n' "$name"
        kill -KILL "$pid" 2>/dev/null || true
        failed=1
        continue
    fi
    # The wrapper writes the exit code just after the process ends.
    for _ in $(seq 20); do [ -f "$RUN_DIR/$name.exit" ] && break; sleep 0.1; done
    code=$(cat "$RUN_DIR/$name.exit" 2>/dev/null || echo unknown)
    printf '  %-24s stopped, exit code %s\n' "$name" "$code"
    [ "$code" = 0 ] || failed=1
done
for entry in "${SERVICES[@]}"; do rm -f "$RUN_DIR/${entry%%:*}.pid"; done

[ "${1:-}" = --keep-stack ] || "$ROOT/deploy/local/stack.sh" down
[ "$failed" = 0 ] || die "not every service stopped cleanly; see $LOG_DIR"
