# Shared by the local-stack scripts: paths, settings, logging and small helpers.
# Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Everything the local stack writes: broker data, logs, process IDs. Ignored by git.
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
LOG_DIR=$STACK_DIR/logs
RUN_DIR=$STACK_DIR/run
mkdir -p "$LOG_DIR" "$RUN_DIR"

DIESEL_CLI_VERSION=2.3.4
# The local Apache Kafka (deploy/local/kafka/server.properties) listens on 127.0.0.1.
KAFKA_ADDR=127.0.0.1:9092
PG_HOST=127.0.0.1
PG_PORT=5432
DEV_DATABASE_URL=postgres://platform:platform@$PG_HOST:$PG_PORT/platform
TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://platform:platform@$PG_HOST:$PG_PORT/platform_test}

export PATH="$HOME/.cargo/bin:$PATH"
# One target directory for the whole workspace, wherever a script is called from.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=
apt_install() {
    command -v apt-get >/dev/null || die "cannot install $* without apt-get; install it by hand"
    if [ -z "$apt_updated" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    say "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# True when something accepts TCP connections at host:port.
listening() {
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# Waits up to $2 seconds for host:port to accept connections.
wait_listening() {
    local addr=$1 seconds=$2
    for _ in $(seq $((seconds * 10))); do
        listening "$addr" && return 0
        sleep 0.1
    done
    return 1
}
