#!/bin/sh
# haven's pre-remove: stop the agent (it resigns and stops its service first).
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop haven.service haven-witness.service >/dev/null 2>&1 || true
fi
