# Health: Redis answers; if another node is active, this one is its replica
# and in sync: the link is up, or went down less than 10 s ago (the active
# has just died: this replica must stay eligible to take over). If this
# node is active (promoted: on_promote has run), its Redis is a master: one
# that still, or again, replicates takes no writes, and the node must step
# down rather than stay active silently.
. "$(dirname "$0")/common.sh"
info=$(cli info replication 2>/dev/null | tr -d '\r') || exit 1
[ -n "$info" ] || exit 1
l=$(leader) || exit 1
[ -z "$l" ] && exit 0
if [ "$l" = "$HAVEN_NODE" ]; then
	r=$(role) || exit 1
	[ "$r" = active ] || exit 0 # promoting: on_promote has not run yet
	echo "$info" | grep -qx "role:master" && exit 0
	echo "active, but this Redis is a replica ($(echo "$info" | grep -x 'master_port:.*'))"
	exit 1
fi
a=$(addr_of "$l")
echo "$info" | grep -qx "master_port:${a##*:}" || exit 1
echo "$info" | grep -qx "master_link_status:up" && exit 0
down=$(echo "$info" | sed -n 's/^master_link_down_since_seconds://p')
[ -n "$down" ] && [ "$down" -ge 0 ] && [ "$down" -lt 10 ]
