# on_promote: this node's Redis becomes the master; the others follow it.
. "$(dirname "$0")/common.sh"
cli replicaof no one | grep -q OK || exit 1
cli client unpause >/dev/null 2>&1
for kv in $REDIS_NODES; do
	[ "${kv%%=*}" = "$HAVEN_NODE" ] && continue
	a=${kv#*=}
	redis-cli -h "${a%:*}" -p "${a##*:}" replicaof "${me%:*}" "$port" >/dev/null 2>&1 &
done
wait
exit 0
