#!/bin/bash
# Creates the platform's topics (core/wire.py ALL_TOPICS) and the stream workers' changelog
# topics (streams/changelogs.py) with three replicas, before any process starts; existing
# topics are left alone. tests/infra/test_compose.py checks this list against the code.
set -euo pipefail
bin=/opt/kafka/bin
create() {  # name partitions [config...]
  local name=$1 partitions=$2
  shift 2
  local configs=()
  for c in "$@"; do configs+=(--config "$c"); done
  "$bin/kafka-topics.sh" --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor 3 \
    --config min.insync.replicas=2 "${configs[@]}"
}
create rpm.readings.v1 8
create rpm.rejected.v1 2
create rpm.device-events.v1 4
create rpm.care-plans.v1 8 cleanup.policy=compact
create rpm.detections.v1 8
create rpm-streams-care-plans-changelog 8 cleanup.policy=compact
create rpm-streams-detector-state-changelog 8 cleanup.policy=compact
echo "kafka-init: topics in place"
