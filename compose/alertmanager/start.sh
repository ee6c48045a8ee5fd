#!/bin/sh
# Outrigger: starts Alertmanager on compose/alertmanager/alertmanager.yml with @ALERT_WEBHOOK_URL@
# replaced by $ALERT_WEBHOOK_URL (taken literally: no character of the URL is special).
set -eu
: "${ALERT_WEBHOOK_URL:?set ALERT_WEBHOOK_URL}"
awk '{
  i = index($0, "@ALERT_WEBHOOK_URL@")
  if (i) $0 = substr($0, 1, i - 1) ENVIRON["ALERT_WEBHOOK_URL"] substr($0, i + 19)
  print
}' /etc/alertmanager/alertmanager.template.yml > /alertmanager/alertmanager.yml
exec /bin/alertmanager --config.file=/alertmanager/alertmanager.yml --storage.path=/alertmanager "$@"
