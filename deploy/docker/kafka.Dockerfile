# A single-node Kafka (KRaft) on Debian's JRE, with the jars `make kafka` resolves from Maven
# Central (libs/devkit/src/modelfleet_devkit/kafka_pom.xml, Kafka 4.3.1). docker-compose.yml runs the
# official apache/kafka image; this one is for machines that cannot pull it: `make compose-test`
# builds it on its Debian base (deploy/compose/compose_test.py assembles the build context:
# this file's kafka-entrypoint.sh and the resolved jars in libs/).
#
# Configured like apache/kafka: every KAFKA_<NAME> variable becomes the property <name>
# (lower case, _ -> ., __ -> _, ___ -> -), CLUSTER_ID formats the storage on first start.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1000 kafka \
 && useradd --system --uid 1000 --gid kafka --home-dir /opt/kafka --shell /usr/sbin/nologin kafka \
 && install -d -o kafka -g kafka /opt/kafka/config /var/lib/kafka/data

COPY libs/ /opt/kafka/libs/
COPY kafka-entrypoint.sh /opt/kafka/kafka-entrypoint.sh

USER kafka
WORKDIR /opt/kafka
EXPOSE 9092 9093
ENTRYPOINT ["/bin/sh", "/opt/kafka/kafka-entrypoint.sh"]
