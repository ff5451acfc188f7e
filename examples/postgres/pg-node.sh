# The service: postgres in the foreground, as the primary's standby when
# another node is active.
. "$(dirname "$0")/common.sh"
set -e
mkdir -p "$PG_DIR"
chown postgres:postgres "$PG_DIR"
# The agent starts this script before it has seen the store; until then
# it does not know who leads (leader() fails) and "" would be a guess:
# wait, up to 60 s, else fail (haven starts this script again).
i=0
until l=$(leader); do
	i=$((i+1))
	[ $i -lt 300 ] || { echo "the agent does not know who leads after 60 s; not starting PostgreSQL on a guess" >&2; exit 1; }
	sleep 0.2
done
if [ ! -s "$DATA/PG_VERSION" ] && [ "$HAVEN_NODE" != "$PG_BOOTSTRAP" ]; then
	# A new node clones the primary: wait until there is one.
	i=0
	while [ -z "$l" ] && [ $i -lt 300 ]; do sleep 0.2; l=$(leader) || l=; i=$((i+1)); done
fi
conninfo() { a=$(addr_of "$1"); echo "host=${a%:*} port=${a##*:} user=postgres dbname=postgres application_name=$HAVEN_NODE"; }
if [ ! -s "$DATA/PG_VERSION" ]; then
	rm -rf "$DATA"
	if [ -z "$l" ] && [ "$HAVEN_NODE" = "$PG_BOOTSTRAP" ]; then
		as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust --data-checksums >/dev/null
		cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
wal_keep_size = 256MB
hot_standby = on
wal_log_hints = on
synchronous_commit = on
fsync = on
CONF
		echo "host replication postgres 127.0.0.1/32 trust" >>"$DATA/pg_hba.conf"
	elif [ -n "$l" ] && [ "$l" != "$HAVEN_NODE" ]; then
		a=$(addr_of "$l")
		as_pg "$BIN/pg_basebackup" -h "${a%:*}" -p "${a##*:}" -U postgres -D "$DATA" -X stream -R -c fast
	else
		echo "waiting for the primary (or the bootstrap node $PG_BOOTSTRAP) before the first start" >&2
		exit 1
	fi
elif [ -n "$l" ] && [ "$l" != "$HAVEN_NODE" ] && [ ! -f "$DATA/standby.signal" ]; then
	# An old primary: rewind it to the new primary's history, then follow
	# it. Wait until the new primary has left recovery (its new timeline
	# exists), or the rewind finds nothing to do and the old primary cannot
	# follow.
	a=$(addr_of "$l")
	i=0
	until [ "$(as_pg "$BIN/psql" -h "${a%:*}" -p "${a##*:}" -U postgres -d postgres -tAX -c 'select pg_is_in_recovery()' 2>/dev/null)" = "f" ]; do
		i=$((i+1))
		[ $i -lt 100 ] || { echo "the new primary $l is still in recovery" >&2; exit 1; }
		sleep 0.1
	done
	# pg_rewind reads the timeline from the source's control file, which a
	# promotion updates at its first checkpoint (Patroni does the same).
	as_pg "$BIN/psql" -h "${a%:*}" -p "${a##*:}" -U postgres -d postgres -tAX -c checkpoint >/dev/null
	as_pg "$BIN/pg_rewind" -D "$DATA" --source-server="$(conninfo "$l")" >&2 || {
		echo "pg_rewind failed; cloning the primary afresh" >&2
		rm -rf "$DATA"
		as_pg "$BIN/pg_basebackup" -h "${a%:*}" -p "${a##*:}" -U postgres -D "$DATA" -X stream -R -c fast
	}
	as_pg touch "$DATA/standby.signal"
fi
if [ -n "$l" ] && [ "$l" != "$HAVEN_NODE" ]; then
	as_pg sh -c "echo \"primary_conninfo = '$(conninfo "$l")'\" >> '$DATA/postgresql.auto.conf'"
fi
# A primary that finds another node active (it started while nobody was,
# or lost the role while it ran) stops; haven starts this script again,
# which rewinds it into a standby. The loop lives in the service's cgroup.
# ($$ is this script's pid, postgres's once it is exec'd: the loop ends with
# it. A background loop ignores SIGINT, the stop signal.)
# Each step holds the role lock (common.sh), as promote.sh does; it fails
# once it has stopped the primary.
follow_once() {
	l=$(leader) || return 0
	[ -z "$l" ] || [ "$l" = "$HAVEN_NODE" ] && return 0
	[ "$(psql_me 'select pg_is_in_recovery()' 2>/dev/null)" = "f" ] || return 0
	echo "$l is active and this node runs a primary: stopping it to rejoin as a standby" >&2
	kill -INT "$(head -1 "$DATA/postmaster.pid")"
	return 1
}
follow() {
	while sleep 0.5 && kill -0 $$ 2>/dev/null; do
		with_role_lock follow_once || exit 0
	done
}
follow &
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$BIN/postgres" -D "$DATA" -p "$port" -k "$PG_DIR" -c listen_addresses=127.0.0.1
