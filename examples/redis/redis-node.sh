# The service: redis-server in the foreground. It starts as a replica of the
# active when another node holds the role (a restarted node must not come
# back as an empty master), and a follower loop keeps it pointed at the
# active. Both live in the service's cgroup: they die with it.
. "$(dirname "$0")/common.sh"
mkdir -p "$REDIS_DIR"
follow() {
	while sleep 0.3 && kill -0 $$ 2>/dev/null; do # ends with redis-server ($$ once exec'd)
		l=$(leader) || continue
		[ -z "$l" ] || [ "$l" = "$HAVEN_NODE" ] && continue
		a=$(addr_of "$l")
		cur=$(cli info replication 2>/dev/null | tr -d '\r' | sed -n 's/^master_port://p')
		[ "$cur" = "${a##*:}" ] || cli replicaof "${a%:*}" "${a##*:}" >/dev/null 2>&1
	done
}
follow &
set -- --port "$port" --bind 127.0.0.1 --daemonize no --dir "$REDIS_DIR" --save "" --appendonly no \
	--protected-mode no --repl-diskless-sync yes --repl-diskless-sync-delay 0
l=$(leader)
if [ -n "$l" ] && [ "$l" != "$HAVEN_NODE" ]; then
	a=$(addr_of "$l")
	set -- "$@" --replicaof "${a%:*}" "${a##*:}"
fi
exec redis-server "$@"
