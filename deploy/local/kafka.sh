#!/usr/bin/env bash
# Apache Kafka for the local stack and the tests, run from its Maven Central artifacts (the
# pinned project in deploy/local/kafka/pom.xml) on the machine's Java.
#
#   kafka.sh install          resolve the broker and tools once into .stack/kafka/libs-<hash>/
#                             (java and maven come from apt when missing); prints that folder
#   kafka.sh cluster-id       a new random cluster ID
#   kafka.sh run NODE_DIR     run one KRaft node in the foreground (exec) with the settings in
#                             NODE_DIR/server.properties; its storage (the log.dirs there) is
#                             formatted on the first run with the ID in NODE_DIR/cluster-id,
#                             made when absent. Extra `kafka-storage format` arguments (for
#                             example --add-scram …) come from KAFKA_FORMAT_ARGS. With
#                             KAFKA_STOP_WITH_PID set (tests), the node is killed once that
#                             process is gone, however it ended.
#   kafka.sh tool NAME ARG…   one of Kafka's command-line tools; see deploy/local/kafka-tool.sh
#
# KAFKA_HEAP_OPTS bounds the heap (default -Xmx1g -Xms1g, as Kafka's own scripts);
# KAFKA_LOG4J_CONFIG replaces the logging configuration (kafka/log4j2.xml: to stderr).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KAFKA_PROJECT=$ROOT/deploy/local/kafka

# The folder holding the runtime classpath, named after the pom's hash so that a changed pom
# resolves again and an unchanged one never downloads anything.
libs_dir() {
    local hash
    hash=$(sha256sum "$KAFKA_PROJECT/pom.xml" | cut -c1-12)
    echo "$STACK_DIR/kafka/libs-$hash"
}

install() {
    local libs
    libs=$(libs_dir)
    if [ -f "$libs/.complete" ]; then
        echo "$libs"
        return
    fi
    # Kafka 4 brokers need Java 17 or later.
    if [ "$(java_major)" -lt 17 ]; then apt_install openjdk-17-jre-headless; fi
    command -v mvn >/dev/null || apt_install maven
    mkdir -p "$STACK_DIR/kafka"
    # One resolution at a time (tests start several nodes at once on a fresh machine).
    exec 9>"$STACK_DIR/kafka/install.lock"
    flock 9
    if [ ! -f "$libs/.complete" ]; then
        say "resolving Apache Kafka $(kafka_version) from Maven Central into $libs (once)"
        rm -rf "$libs.partial"
        # Resolve into a scratch folder and rename it at the end, so an interrupted download is
        # never mistaken for a complete classpath.
        mvn -q -B -Dstyle.color=never -f "$KAFKA_PROJECT/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$libs.partial" >&2 \
            || die "could not resolve Apache Kafka from Maven Central (see the Maven output above)"
        touch "$libs.partial/.complete"
        rm -rf "$libs"
        mv "$libs.partial" "$libs"
    fi
    exec 9>&-
    echo "$libs"
}

# The major version of the `java` on the PATH; 0 when there is none.
java_major() {
    command -v java >/dev/null || { echo 0; return; }
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_PROJECT/pom.xml"
}

# Runs a Java main class of Kafka's with its classpath, as kafka-run-class.sh does.
java_main() {
    local libs
    libs=$(install)
    local heap=${KAFKA_HEAP_OPTS:--Xmx256m}
    # shellcheck disable=SC2086 # heap and JVM options are word lists
    exec java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="${KAFKA_LOG4J_CONFIG:-$KAFKA_PROJECT/log4j2.xml}" \
        ${KAFKA_JVM_OPTS:-} \
        -cp "$libs/*" "$@"
}

# Kafka's tools by the names of its bin/ scripts (bin/kafka-topics.sh → kafka-topics), as
# those scripts name their classes in Kafka 4.4 (Connect's are left out: no Connect here).
tool_class() {
    local tools=org.apache.kafka.tools
    case "$1" in
        kafka-acls) echo $tools.AclCommand ;;
        kafka-broker-api-versions) echo $tools.BrokerApiVersionsCommand ;;
        kafka-client-metrics) echo $tools.ClientMetricsCommand ;;
        kafka-cluster) echo $tools.ClusterTool ;;
        kafka-configs) echo $tools.ConfigCommand ;;
        kafka-console-consumer) echo $tools.consumer.ConsoleConsumer ;;
        kafka-console-producer) echo $tools.ConsoleProducer ;;
        kafka-console-share-consumer) echo $tools.consumer.ConsoleShareConsumer ;;
        kafka-consumer-groups) echo $tools.consumer.group.ConsumerGroupCommand ;;
        kafka-consumer-perf-test) echo $tools.ConsumerPerformance ;;
        kafka-delegation-tokens) echo $tools.DelegationTokenCommand ;;
        kafka-delete-records) echo $tools.DeleteRecordsCommand ;;
        kafka-dump-log) echo $tools.DumpLogSegments ;;
        kafka-e2e-latency) echo $tools.EndToEndLatency ;;
        kafka-features) echo $tools.FeatureCommand ;;
        kafka-get-offsets) echo $tools.GetOffsetShell ;;
        kafka-groups) echo $tools.GroupsCommand ;;
        kafka-jmx) echo $tools.JmxTool ;;
        kafka-leader-election) echo $tools.LeaderElectionCommand ;;
        kafka-log-dirs) echo $tools.LogDirsCommand ;;
        kafka-metadata-quorum) echo $tools.MetadataQuorumCommand ;;
        kafka-producer-perf-test) echo $tools.ProducerPerformance ;;
        kafka-reassign-partitions) echo $tools.reassign.ReassignPartitionsCommand ;;
        kafka-replica-verification) echo $tools.ReplicaVerificationTool ;;
        kafka-share-consumer-perf-test) echo $tools.ShareConsumerPerformance ;;
        kafka-share-groups) echo $tools.consumer.group.ShareGroupCommand ;;
        kafka-storage) echo kafka.tools.StorageTool ;;
        kafka-streams-application-reset) echo $tools.StreamsResetter ;;
        kafka-streams-groups) echo $tools.streams.StreamsGroupCommand ;;
        kafka-topics) echo $tools.TopicCommand ;;
        kafka-transactions) echo $tools.TransactionsCommand ;;
        kafka-verifiable-consumer) echo $tools.VerifiableConsumer ;;
        kafka-verifiable-producer) echo $tools.VerifiableProducer ;;
        *) return 1 ;;
    esac
}

tool() {
    [ $# -ge 1 ] || die "usage: kafka-tool.sh NAME [ARG…]; NAME is one of Kafka's bin/ scripts, e.g. kafka-topics"
    local name=${1%.sh} class
    shift
    class=$(tool_class "$name") || die "unknown Kafka tool '$name'; see tool_class in $0 for the list"
    KAFKA_JVM_OPTS="-Dkafka.root.log.level=WARN ${KAFKA_JVM_OPTS:-}" java_main "$class" "$@"
}

run() {
    local node=${1:?usage: kafka.sh run NODE_DIR}
    local properties=$node/server.properties
    [ -f "$properties" ] || die "no $properties"
    local data
    data=$(sed -n 's/^log\.dirs=//p' "$properties" | tail -n 1)
    [ -n "$data" ] || die "$properties sets no log.dirs"
    if [ ! -f "$data/meta.properties" ]; then
        if [ ! -s "$node/cluster-id" ]; then
            (KAFKA_HEAP_OPTS=-Xmx128m tool kafka-storage random-uuid) >"$node/cluster-id.new"
            mv "$node/cluster-id.new" "$node/cluster-id"
        fi
        say "formatting the Kafka storage in $data (cluster $(cat "$node/cluster-id"))"
        # Split on whitespace without glob expansion: SCRAM credentials look like globs
        # (`SCRAM-SHA-512=[name=a,password=b]`).
        local format_args=()
        read -r -a format_args <<<"${KAFKA_FORMAT_ARGS:-}"
        (KAFKA_HEAP_OPTS=-Xmx256m tool kafka-storage format --ignore-formatted \
            --cluster-id "$(cat "$node/cluster-id")" --config "$properties" \
            "${format_args[@]}") >&2
    fi
    export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g}
    if [ -z "${KAFKA_STOP_WITH_PID:-}" ]; then
        java_main kafka.Kafka "$properties"
    fi
    # A test's node: the broker runs beside this script, which kills it when the test process is
    # gone (a test killed with SIGKILL cannot stop its brokers itself). The test stops a node by
    # killing this script's whole process group.
    java_main kafka.Kafka "$properties" &
    local broker=$!
    trap 'kill -TERM "$broker" 2>/dev/null || true' TERM INT
    while kill -0 "$broker" 2>/dev/null && kill -0 "$KAFKA_STOP_WITH_PID" 2>/dev/null; do
        sleep 1
    done
    kill -KILL "$broker" 2>/dev/null || true
    wait "$broker" || true
}

case "${1:-}" in
    install) install ;;
    cluster-id) KAFKA_HEAP_OPTS=-Xmx128m tool kafka-storage random-uuid ;;
    run) shift; run "$@" ;;
    tool) shift; tool "$@" ;;
    *) die "usage: $0 install | cluster-id | run NODE_DIR | tool NAME [ARG…]" ;;
esac
