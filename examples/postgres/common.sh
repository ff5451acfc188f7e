# Shared by the scripts. HAVEN_NODE, HAVEN_API and PG_DIR come from haven.

# Every node's PostgreSQL, as name=host:port (the nodes' backend addresses).
PG_NODES="n1=127.0.0.1:5441 n2=127.0.0.1:5442"
# The node that creates the cluster on the very first start.
PG_BOOTSTRAP=n1

BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DATA=$PG_DIR/pgdata

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

# with_role_lock CMD... runs CMD holding this node's role lock. The
# follower loop (pg-node.sh) and promote.sh both act on what this node's
# PostgreSQL is, and take the lock to do it: a follower step that read the
# old active's name just before this node was promoted must not stop the
# new primary just after pg_ctl promote.
with_role_lock() {
	mkdir -p "$PG_DIR"
	(flock 9 && "$@") 9>"$PG_DIR/role.lock"
}

addr_of() {
	for kv in $PG_NODES; do
		[ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"
	done
	return 0
}

me=$(addr_of "$HAVEN_NODE")
port=${me##*:}
as_pg() { runuser -u postgres -- "$@"; }
psql_me() { as_pg "$BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAX -c "$1"; }
