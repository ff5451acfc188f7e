# Shared by the scripts: who leads, and where each node's Redis listens.
# HAVEN_NODE and HAVEN_API come from haven.

# Every node's Redis, as name=host:port (the nodes' backend addresses).
REDIS_NODES="n1=127.0.0.1:6381 n2=127.0.0.1:6382"

# leader prints the node that holds the active role, "" if none; it fails
# if the agent does not answer or does not know (the caller must not guess
# then).
leader() {
	# Under TLS (tls: in haven.yaml) haven gives hooks the CA's path.
	if [ -n "${HAVEN_TLS_CA:-}" ]; then
		st=$(curl -fsS --max-time 1 --cacert "$HAVEN_TLS_CA" "https://$HAVEN_API/status") || return 1
	else
		st=$(curl -fsS --max-time 1 "http://$HAVEN_API/status") || return 1
	fi
	st=$(echo "$st" | tr -d ' \n')
	# leader_known: false before the agent has seen the store, or when it
	# has not reached it for longer than the lease; then "" would be a
	# guess, not "nobody is active".
	case $st in *'"leader_known":true'*) ;; *) return 1 ;; esac
	echo "$st" | sed -n 's/.*"leader":{"node":"\([^"]*\)".*/\1/p'
}

# role prints this node's role as its agent sees it (standby, promoting,
# active, demoting...); it fails if the agent does not answer.
role() {
	if [ -n "${HAVEN_TLS_CA:-}" ]; then
		r=$(curl -fsS --max-time 1 --cacert "$HAVEN_TLS_CA" "https://$HAVEN_API/v1/role") || return 1
	else
		r=$(curl -fsS --max-time 1 "http://$HAVEN_API/v1/role") || return 1
	fi
	echo "$r" | tr -d ' \n' | sed -n 's/.*"role":"\([^"]*\)".*/\1/p'
}

# with_role_lock CMD... runs CMD holding this node's role lock. The
# follower loop (redis-node.sh) and promote.sh both change what this
# node's Redis replicates, and take the lock to do it: a follower step
# that read the old active's name just before this node was promoted must
# not point it back at the old active just after REPLICAOF NO ONE.
with_role_lock() {
	mkdir -p "$REDIS_DIR"
	(flock 9 && "$@") 9>"$REDIS_DIR/role.lock"
}

# addr_of NODE prints NODE's Redis host:port.
addr_of() {
	for kv in $REDIS_NODES; do
		[ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"
	done
	return 0
}

me=$(addr_of "$HAVEN_NODE")
port=${me##*:}
cli() { redis-cli -p "$port" "$@"; }
