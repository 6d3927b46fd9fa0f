#!/usr/bin/env bash
# The local stack: PostgreSQL, Apache Kafka, the topics and the migrations.
#
#   stack.sh up      install what is missing, start what is not running, apply topics and
#                    migrations (idempotent: safe to run again)
#   stack.sh down    stop the broker if this script started it (PostgreSQL is left running)
#
# Nothing is assumed installed: a fresh Debian machine gets PostgreSQL, Java, Maven and the build
# libraries from apt, Apache Kafka from Maven Central (deploy/local/kafka.sh) and diesel_cli
# from crates.io.
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
    # 8>&-: the server must not inherit the descriptor of stack.lock, or it would hold the lock
    # for as long as it runs and the next `stack.sh up` would wait for ever.
    pg_lsclusters -h | while read -r version cluster _; do
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start 8>&- || true
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

ensure_diesel_cli() {
    if command -v diesel >/dev/null && diesel --version 2>/dev/null | grep -q "$DIESEL_CLI_VERSION"; then
        return
    fi
    say "installing diesel_cli $DIESEL_CLI_VERSION from crates.io (about 3 minutes, once)"
    cargo install diesel_cli --version "$DIESEL_CLI_VERSION" --locked \
        --no-default-features --features postgres
}

# The local Apache Kafka: one KRaft node (broker and controller) on $KAFKA_ADDR, its data in
# .stack/kafka/node/data (kept across restarts and kill -9), its log in .stack/logs/kafka.log.
start_broker() {
    if listening "$KAFKA_ADDR"; then
        say "a broker is listening on $KAFKA_ADDR"
        return
    fi
    "$ROOT/deploy/local/kafka.sh" install >/dev/null
    local node=$STACK_DIR/kafka/node
    mkdir -p "$node"
    {
        cat "$ROOT/deploy/local/kafka/server.properties"
        echo "log.dirs=$node/data"
    } >"$node/server.properties"
    # What this start adds to kafka.out, not what earlier ones left there, is shown on failure.
    local out_start
    out_start=$(stat -c %s "$LOG_DIR/kafka.out" 2>/dev/null || echo 0)
    say "starting Apache Kafka on $KAFKA_ADDR (data in $node/data, log in $LOG_DIR/kafka.log)"
    # The broker's log rolls at 10 MiB (kafka/log4j2-broker.xml); what the JVM itself prints
    # (a crash at start-up, say) goes to kafka.out.
    KAFKA_LOG4J_CONFIG=$ROOT/deploy/local/kafka/log4j2-broker.xml \
        KAFKA_JVM_OPTS="-Dkafka.log.file=$LOG_DIR/kafka.log" \
        setsid "$ROOT/deploy/local/kafka.sh" run "$node" >>"$LOG_DIR/kafka.out" 2>&1 </dev/null 8>&- &
    local pid=$!
    echo "$pid" >"$RUN_DIR/kafka.pid"
    for _ in $(seq 1200); do
        listening "$KAFKA_ADDR" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # Listening is not serving: wait until the broker answers a metadata request.
    if ! kill -0 "$pid" 2>/dev/null \
        || ! timeout 120 "$ROOT/deploy/local/kafka-tool.sh" kafka-topics \
            --bootstrap-server "$KAFKA_ADDR" --list >/dev/null; then
        tail -c "+$((out_start + 1))" "$LOG_DIR/kafka.out" | tail -n 20 >&2
        tail -n 20 "$LOG_DIR/kafka.log" >&2 2>/dev/null || true
        kill -0 "$pid" 2>/dev/null || rm -f "$RUN_DIR/kafka.pid"
        die "Apache Kafka did not start; see $LOG_DIR/kafka.log and kafka.out"
    fi
}

stop_broker() {
    local pidfile=$RUN_DIR/kafka.pid
    [ -f "$pidfile" ] || return 0
    local pid
    pid=$(cat "$pidfile")
    # Only our broker: after a crash the PID may have gone to an unrelated process.
    if kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o args= | grep -q 'kafka\.Kafka'; then
        say "stopping Apache Kafka (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        # A controlled shutdown takes a few seconds; a broker that hangs is killed after 60 s
        # (its data survives that too).
        for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

platform_admin() {
    cargo build --quiet -p platform-admin
    "$CARGO_TARGET_DIR/debug/platform-admin" "$@"
}

# One `up` or `down` at a time: two `make dev` started together would otherwise both start a
# broker, and the loser would forget the winner's PID. The servers started here (PostgreSQL, the
# broker) are started with descriptor 8 closed so that they do not keep the lock.
exec 8>"$RUN_DIR/stack.lock"
if ! flock -w 600 8; then
    die "another stack.sh up/down has held $RUN_DIR/stack.lock for 10 minutes (fuser -v shows which process)"
fi

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
