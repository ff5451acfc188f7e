# on_promote: this node's Redis becomes the master; the others follow it.
# It holds the role lock (common.sh) so that no follower step that began
# before the promotion re-points this Redis at the old active after it.
. "$(dirname "$0")/common.sh"
promote() {
	cli replicaof no one | grep -q OK || { echo "REPLICAOF NO ONE failed on port $port" >&2; return 1; }
	cli client unpause >/dev/null 2>&1
}
with_role_lock promote || exit 1
for kv in $REDIS_NODES; do
	[ "${kv%%=*}" = "$HAVEN_NODE" ] && continue
	a=${kv#*=}
	redis-cli -h "${a%:*}" -p "${a##*:}" replicaof "${me%:*}" "$port" >/dev/null 2>&1 &
done
wait
exit 0
