#!/usr/bin/env bash
# The local stack: PostgreSQL, the Kafka-protocol broker, the topics and the migrations.
#
#   stack.sh up      install what is missing, start what is not running, apply topics and
#                    migrations (idempotent: safe to run again)
#   stack.sh down    stop the broker if this script started it (PostgreSQL is left running)
#
# Nothing is assumed installed: a fresh Debian machine gets PostgreSQL and the build libraries
# from apt, and Tansu (an Apache-licensed Kafka-compatible broker, since Apache Kafka cannot run
# here) from crates.io.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_build_tools() {
    # rdkafka builds its bundled librdkafka (C, with OpenSSL for SASL_SSL and zlib for gzip).
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    command -v make >/dev/null || missing+=(make)
    command -v curl >/dev/null || missing+=(curl)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
    dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
    # diesel_cli (schema check) links libpq.
    dpkg -s libpq-dev >/dev/null 2>&1 || missing+=(libpq-dev)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

ensure_postgres() {
    if listening "$PG_HOST:$PG_PORT"; then
        say "PostgreSQL is listening on $PG_HOST:$PG_PORT"
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null; then
        apt_install postgresql postgresql-client
    fi
    if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
        local version
        version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        as_root pg_createcluster "$version" main
    fi
    say "starting PostgreSQL"
    pg_lsclusters -h | while read -r version cluster _; do
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
    done
    wait_listening "$PG_HOST:$PG_PORT" 30 || die "PostgreSQL did not start listening on $PG_HOST:$PG_PORT"
}

# psql as the database superuser: through the Unix socket as the postgres OS user where we can
# (Debian's default peer authentication), over TCP as user postgres otherwise.
superuser_psql() {
    if id postgres >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@")
    elif id postgres >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        (cd / && sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 "$@")
    else
        psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres "$@"
    fi
}

ensure_databases() {
    superuser_psql -d postgres -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'platform') THEN
            CREATE ROLE platform LOGIN PASSWORD 'platform';
        END IF;
    END \$\$;"
    local db
    # platform: make dev; platform_test: the tests; platform_schema_check: check-schema.sh.
    for db in platform platform_test platform_schema_check; do
        if [ -z "$(superuser_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
            say "creating database $db"
            superuser_psql -d postgres -c "CREATE DATABASE $db OWNER platform"
        fi
    done
}

ensure_tansu() {
    if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
        return
    fi
    say "installing tansu $TANSU_VERSION from crates.io (about 10 minutes on 2 cores, once)"
    # --locked is required: without it the dependency resolution breaks the build.
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
}

ensure_diesel_cli() {
    if command -v diesel >/dev/null && diesel --version 2>/dev/null | grep -q "$DIESEL_CLI_VERSION"; then
        return
    fi
    say "installing diesel_cli $DIESEL_CLI_VERSION from crates.io (about 3 minutes, once)"
    cargo install diesel_cli --version "$DIESEL_CLI_VERSION" --locked \
        --no-default-features --features postgres
}

start_broker() {
    if listening "$KAFKA_ADDR"; then
        say "a broker is listening on $KAFKA_ADDR"
        return
    fi
    ensure_tansu
    mkdir -p "$STACK_DIR/tansu"
    say "starting tansu on $KAFKA_ADDR (data in $STACK_DIR/tansu, log in $LOG_DIR/tansu.log)"
    # sqlite storage keeps every message and committed offset across a kill of the broker. Tansu
    # reads the path after sqlite:// relative to its working directory, hence the cd. Its own
    # OTLP export stays off whatever the environment says.
    (cd "$STACK_DIR/tansu" && exec env -u OTEL_EXPORTER_OTLP_ENDPOINT setsid tansu broker \
        --listener-url "tcp://$KAFKA_ADDR" \
        --advertised-listener-url "tcp://$KAFKA_ADDR" \
        --storage-engine "sqlite://tansu.db" \
        >>"$LOG_DIR/tansu.log" 2>&1 </dev/null) &
    local pid=$!
    echo "$pid" >"$RUN_DIR/tansu.pid"
    for _ in $(seq 300); do
        listening "$KAFKA_ADDR" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$LOG_DIR/tansu.log" >&2
    die "tansu did not start"
}

stop_broker() {
    local pidfile=$RUN_DIR/tansu.pid
    [ -f "$pidfile" ] || return 0
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping tansu (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

platform_admin() {
    cargo build --quiet -p platform-admin
    "$CARGO_TARGET_DIR/debug/platform-admin" "$@"
}

case "${1:-}" in
    up)
        ensure_build_tools
        ensure_postgres
        ensure_databases
        ensure_diesel_cli
        start_broker
        say "creating topics from deploy/topics.toml"
        KAFKA_BROKERS=$KAFKA_ADDR RUST_LOG=warn platform_admin create-topics \
            --spec "$ROOT/deploy/topics.toml" --max-replication-factor 1
        say "applying migrations"
        DATABASE_URL=$DEV_DATABASE_URL RUST_LOG=warn platform_admin migrate
        ;;
    down)
        stop_broker
        ;;
    *)
        die "usage: $0 up|down"
        ;;
esac
