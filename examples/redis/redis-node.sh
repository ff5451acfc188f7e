# The service: redis-server in the foreground. It starts as a replica of the
# active when another node holds the role (a restarted node must not come
# back as an empty master), and a follower loop keeps it pointed at the
# active. Both live in the service's cgroup: they die with it.
. "$(dirname "$0")/common.sh"
mkdir -p "$REDIS_DIR"
# follow_once points this node's Redis at the active when another node is
# active and it replicates something else. It runs under the role lock
# (common.sh), as promote.sh does.
follow_once() {
	l=$(leader) || return 0
	[ -z "$l" ] || [ "$l" = "$HAVEN_NODE" ] && return 0
	a=$(addr_of "$l")
	cur=$(cli info replication 2>/dev/null | tr -d '\r' | sed -n 's/^master_port://p')
	[ "$cur" = "${a##*:}" ] && return 0
	echo "following $l: replicaof $a (this Redis replicated port '${cur}')" >&2
	cli replicaof "${a%:*}" "${a##*:}" >/dev/null 2>&1
}
follow() {
	while sleep 0.3 && kill -0 $$ 2>/dev/null; do # ends with redis-server ($$ once exec'd)
		with_role_lock follow_once
	done
}
set -- --port "$port" --bind 127.0.0.1 --daemonize no --dir "$REDIS_DIR" --save "" --appendonly no \
	--protected-mode no --repl-diskless-sync yes --repl-diskless-sync-delay 0
# The agent starts its service before it has seen the store, and until
# then it does not know who leads (leader_known: false, and leader()
# fails); nor does an agent that does not answer in time. Starting as a
# master on that would bring a restarted node back as an empty master
# (which could win the next election with it, or be made the others'
# master: seen under load, every write lost). Wait until the agent knows
# who leads, up to 60 s, else fail: haven starts this script again.
i=0
until l=$(leader); do
	i=$((i+1))
	[ $i -lt 300 ] || { echo "the agent does not know who leads after 60 s; not starting Redis on a guess" >&2; exit 1; }
	sleep 0.2
done
if [ -n "$l" ] && [ "$l" != "$HAVEN_NODE" ]; then
	a=$(addr_of "$l")
	set -- "$@" --replicaof "${a%:*}" "${a##*:}"
fi
follow &
exec redis-server "$@"
