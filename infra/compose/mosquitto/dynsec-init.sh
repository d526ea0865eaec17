#!/bin/sh
# First start only: the dynamic-security file with its admin (who then provisions the bridges'
# client and every device over MQTT, without a restart). Later starts keep the file.
set -eu
file=/mosquitto/data/dynamic-security.json
if [ ! -f "$file" ]; then
  mosquitto_ctrl dynsec init "$file" "$RPM_MQTT_ADMIN_USERNAME" "$RPM_MQTT_ADMIN_PASSWORD"
  chown mosquitto:mosquitto "$file"
fi
