#!/usr/bin/env bash
# Kafka's own command-line tools, by the names of its bin/ scripts, on the Apache Kafka the
# local stack runs (resolved from Maven Central on first use). For example:
#
#   deploy/local/kafka-tool.sh kafka-topics --bootstrap-server 127.0.0.1:9092 --describe --topic user.registration
#   deploy/local/kafka-tool.sh kafka-consumer-groups --bootstrap-server 127.0.0.1:9092 --describe --group email-workers
#   deploy/local/kafka-tool.sh kafka-console-consumer --bootstrap-server 127.0.0.1:9092 --topic user-activity-logs-dlq --from-beginning --formatter-property print.headers=true
exec "$(dirname "$0")/kafka.sh" tool "$@"
