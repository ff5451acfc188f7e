# on_demote: the old active stops taking writes at once; the new active's
# promotion (or the follower loop) then makes it a replica.
. "$(dirname "$0")/common.sh"
cli client pause 30000 write >/dev/null 2>&1
exit 0
