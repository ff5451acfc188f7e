# Health: PostgreSQL answers; if another node is active, this one is in
# recovery (a standby) and has received WAL.
. "$(dirname "$0")/common.sh"
l=$(leader) || exit 1
if [ -z "$l" ] || [ "$l" = "$HAVEN_NODE" ]; then
	psql_me 'select 1' >/dev/null
	exit
fi
[ "$(psql_me 'select pg_is_in_recovery() and pg_last_wal_receive_lsn() is not null')" = "t" ]
