# Health: Redis answers; if another node is active, this one is its replica
# and in sync: the link is up, or went down less than 10 s ago (the active
# has just died: this replica must stay eligible to take over).
. "$(dirname "$0")/common.sh"
info=$(cli info replication 2>/dev/null | tr -d '\r') || exit 1
[ -n "$info" ] || exit 1
l=$(leader) || exit 1
[ -z "$l" ] || [ "$l" = "$HAVEN_NODE" ] && exit 0
a=$(addr_of "$l")
echo "$info" | grep -qx "master_port:${a##*:}" || exit 1
echo "$info" | grep -qx "master_link_status:up" && exit 0
down=$(echo "$info" | sed -n 's/^master_link_down_since_seconds://p')
[ -n "$down" ] && [ "$down" -ge 0 ] && [ "$down" -lt 10 ]
