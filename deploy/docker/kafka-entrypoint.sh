#!/bin/sh
# Entry point of kafka.Dockerfile: server.properties from KAFKA_* variables (as apache/kafka reads
# them), the KRaft storage formatted once with CLUSTER_ID, then the broker in the foreground.
# -f: the classpath wildcard (libs/*) is for java, not for the shell.
set -euf
conf=/opt/kafka/config/server.properties
: > "$conf"
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS) ;;
    KAFKA_*)
      key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
      printf '%s=%s\n' "$key" "$value" >> "$conf"
      ;;
  esac
done
cat > /opt/kafka/config/log4j2.properties <<'LOG'
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
LOG
java_cmd="java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m} -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -Dlog4j2.shutdownHookEnabled=false
  -cp /opt/kafka/libs/*"
# Static voters (KAFKA_CONTROLLER_QUORUM_VOTERS) need no --standalone; a dynamic quorum does.
standalone=--standalone
[ -z "${KAFKA_CONTROLLER_QUORUM_VOTERS:-}" ] || standalone=
# shellcheck disable=SC2086
$java_cmd kafka.tools.StorageTool format --config "$conf" --cluster-id "${CLUSTER_ID:?set CLUSTER_ID}" \
  --ignore-formatted $standalone
# shellcheck disable=SC2086
exec $java_cmd kafka.Kafka "$conf"
