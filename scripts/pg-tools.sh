# shellcheck shell=bash
# pg-tools.sh is sourced by pg-backup.sh and pg-restore-check.sh: it finds
# the PostgreSQL client tools they run. The caller defines PG_MAJOR, PG_SH,
# log and die first.

# find_tool NAME VAR [quiet]: leave VAR alone when the caller set it, else
# point it at NAME from a PostgreSQL 18 bin dir, else from PATH (with a
# warning unless quiet: any psql >= 10 will do, pg_dump must be >= the server).
find_tool() {
	local name=$1 var=$2 quiet=${3:-} d p
	[[ -z ${!var:-} ]] || return 0
	for d in "$("$PG_SH" bin 2>/dev/null || true)" "/usr/lib/postgresql/$PG_MAJOR/bin"; do
		if [[ -n $d && -x $d/$name ]]; then
			printf -v "$var" '%s' "$d/$name"
			return 0
		fi
	done
	p=$(command -v "$name" 2>/dev/null) ||
		die 2 "$name not found: install the PostgreSQL $PG_MAJOR client (Debian/Ubuntu with the PGDG repository: postgresql-client-$PG_MAJOR) or set $var"
	[[ -n $quiet ]] || log "warning: no PostgreSQL $PG_MAJOR $name found (scripts/pg.sh bin has none); falling back to $p ($("$p" --version 2>/dev/null | head -n 1))"
	printf -v "$var" '%s' "$p"
}
