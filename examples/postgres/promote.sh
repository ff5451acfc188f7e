# on_promote: the standby becomes the primary, and waits for a synchronous
# standby from now on (commits survive the loss of either node).
. "$(dirname "$0")/common.sh"
# Under the role lock (common.sh): no follower step that began before the
# promotion stops the new primary after it.
promote() {
	if [ "$(psql_me 'select pg_is_in_recovery()')" = "t" ]; then
		as_pg "$BIN/pg_ctl" promote -w -t 8 -D "$DATA" >/dev/null || return 1
	fi
}
with_role_lock promote || exit 1
psql_me "alter system set synchronous_standby_names = '*'" >/dev/null &&
	psql_me "select pg_reload_conf()" >/dev/null
