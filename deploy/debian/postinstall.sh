#!/bin/sh
# haven's post-install: a system user for the agent, its directories.
set -e
if ! getent group haven >/dev/null; then
  addgroup --system haven >/dev/null
fi
if ! getent passwd haven >/dev/null; then
  adduser --system --ingroup haven --home /var/lib/haven --no-create-home --shell /usr/sbin/nologin --gecos "haven HA agent" haven >/dev/null
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/haven.conf || true
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
echo "haven installed. Next: write /etc/haven/haven.yaml (haven init does it), set HAVEN_NODE in /etc/default/haven, then systemctl enable --now haven"
