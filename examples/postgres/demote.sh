# on_demote: the old primary stops at once (immediate shutdown): it must
# not commit anything the new primary will not have.
. "$(dirname "$0")/common.sh"
pid=$(head -1 "$DATA/postmaster.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null
exit 0
