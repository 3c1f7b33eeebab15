#!/usr/bin/env bash
# scripts/pg-backup.sh - back up the canonical Postgres: a timestamped
# custom-format dump (pg_dump -Fc) plus the exact per-table row counts of the
# same snapshot, then prune old dumps. `make pg-backup` runs it; so does the
# nightly GitHub workflow (.github/workflows/pg-backup.yml) through `fly proxy`.
#
# Fly Postgres is an unmanaged cluster: nothing else backs it up.
#
# The counts come from the snapshot the dump was taken from (a REPEATABLE READ
# transaction exports it with pg_export_snapshot and pg_dump --snapshot uses
# it), so scripts/pg-restore-check.sh can compare a restore with what was
# really dumped even though the live database kept changing.
#
# Env (everything comes from the environment; there are no arguments):
#   DATABASE_URL      database to dump (required); never printed
#   BACKUP_DIR        directory for dumps (default ./backups; created 0700)
#   BACKUP_KEEP_DAYS  after a successful dump, delete dumps older than this
#                     many days (default 14; 0 keeps everything)
#   BACKUP_PREFIX     file name prefix (default mailslot)
#   PG_DUMP, PSQL     commands to run; may hold several words, e.g.
#                     PG_DUMP='docker compose exec -T postgres pg_dump'.
#                     Default: from the PostgreSQL 18 bin dir of scripts/pg.sh
#                     (`pg.sh bin`), else /usr/lib/postgresql/18/bin, else
#                     PATH (with a warning: an older pg_dump cannot dump a
#                     newer server).
#   PG_SH             path of scripts/pg.sh (default: beside this script)
#
# Output: a table of table -> rows on stdout; progress on stderr. Files
#   $BACKUP_DIR/$BACKUP_PREFIX-YYYYMMDDTHHMMSSZ.dump         (mode 0600)
#   $BACKUP_DIR/$BACKUP_PREFIX-YYYYMMDDTHHMMSSZ.dump.counts  (TSV table, rows)
# Exit: 0 ok; 2 bad configuration; 3 the dump failed (no partial file is left
# and nothing is pruned).
set -euo pipefail

readonly PG_MAJOR=18
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
PG_SH=${PG_SH:-$HERE/pg.sh}
BACKUP_DIR=${BACKUP_DIR:-./backups}
BACKUP_KEEP_DAYS=${BACKUP_KEEP_DAYS:-14}
BACKUP_PREFIX=${BACKUP_PREFIX:-mailslot}

log() { printf 'pg-backup: %s\n' "$*" >&2; }
die() {
	local code=$1
	shift
	printf 'pg-backup: error: %s\n' "$*" >&2
	exit "$code"
}

[[ -n ${DATABASE_URL:-} ]] || die 2 "DATABASE_URL is not set: point it at the database to back up (through 'fly proxy' for Fly Postgres, e.g. postgres://USER:PASS@127.0.0.1:15432/mailslot)"
[[ $BACKUP_KEEP_DAYS =~ ^[0-9]+$ ]] || die 2 "BACKUP_KEEP_DAYS=$BACKUP_KEEP_DAYS is not a whole number of days"
[[ $BACKUP_PREFIX =~ ^[A-Za-z0-9._-]+$ ]] || die 2 "BACKUP_PREFIX=$BACKUP_PREFIX may hold only letters, digits, '.', '_' and '-'"

# shellcheck source=scripts/pg-tools.sh
. "$HERE/pg-tools.sh"

find_tool pg_dump PG_DUMP
find_tool psql PSQL quiet
read -ra dump_cmd <<<"$PG_DUMP"
read -ra psql_cmd <<<"$PSQL"

major_of_version() { sed -nE 's/.*\(PostgreSQL\) ([0-9]+).*/\1/p' | head -n 1; }

# The counting query: exact rows per ordinary table (partitions counted one by
# one, extension-owned tables skipped: CREATE EXTENSION recreates them).
# shellcheck disable=SC2016 # $1 is not a shell variable
readonly COUNT_SQL="SELECT format('%I.%I', n.nspname, c.relname),
       (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname <> 'information_schema'
   AND n.nspname !~ '^pg_'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1;"

umask 077
mkdir -p -- "$BACKUP_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
dump=$BACKUP_DIR/$BACKUP_PREFIX-$stamp.dump
counts=$dump.counts
[[ ! -e $dump ]] || die 2 "$dump already exists; wait a second and run again"
partial=$BACKUP_DIR/.$BACKUP_PREFIX-$stamp.dump.partial
partial_counts=$partial.counts
errlog=$(mktemp)
snaplog=$(mktemp)
snap_pid=''

cleanup() {
	rm -f -- "$partial" "$partial_counts" "$errlog" "$snaplog"
	if [[ -n $snap_pid ]]; then kill "$snap_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# Versions: pg_dump refuses a server newer than itself; say why up front.
dump_major=$("${dump_cmd[@]}" --version 2>/dev/null | major_of_version) || true
[[ -n $dump_major ]] || die 2 "cannot run '$PG_DUMP --version'"
server_num=$("${psql_cmd[@]}" -X -A -t -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -c 'SHOW server_version_num' 2>"$errlog") ||
	die 3 "cannot connect to DATABASE_URL: $(head -n 3 "$errlog")"
server_major=$((server_num / 10000))
if ((dump_major < server_major)); then
	die 3 "pg_dump $dump_major cannot dump a PostgreSQL $server_major server; install postgresql-client-$server_major or set PG_DUMP to a pg_dump >= $server_major"
fi

# Hold a REPEATABLE READ transaction open in a psql coprocess: its exported
# snapshot is what pg_dump dumps and what the counts are taken from.
coproc SNAP { "${psql_cmd[@]}" -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 -d "$DATABASE_URL" 2>"$snaplog"; }
# shellcheck disable=SC2153 # SNAP_PID is set by coproc SNAP
snap_pid=$SNAP_PID
snap_in=${SNAP[1]}
snap_out=${SNAP[0]}
printf '%s\n' 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;' 'SELECT pg_catalog.pg_export_snapshot();' >&"$snap_in"
snapshot=''
IFS= read -r -t 60 snapshot <&"$snap_out" || true
[[ $snapshot =~ ^[0-9A-Fa-f-]+$ ]] || die 3 "could not export a snapshot: $(head -n 3 "$snaplog")"

log "dumping (PostgreSQL $server_major server, pg_dump $dump_major, snapshot $snapshot)"
if ! "${dump_cmd[@]}" --format=custom --snapshot="$snapshot" --lock-wait-timeout=60s \
	-d "$DATABASE_URL" >"$partial" 2>"$errlog"; then
	die 3 "pg_dump failed: $(tail -n 5 "$errlog")"
fi
[[ -s $partial ]] || die 3 "pg_dump wrote nothing"

printf '%s\n' "$COUNT_SQL" "SELECT '__pg_backup_end__';" >&"$snap_in"
: >"$partial_counts"
line=''
while :; do
	IFS= read -r -t 600 line <&"$snap_out" || die 3 "counting rows failed: $(head -n 3 "$snaplog")"
	[[ $line != __pg_backup_end__ ]] || break
	printf '%s\n' "$line" >>"$partial_counts"
done
printf 'COMMIT;\n\\q\n' >&"$snap_in"
exec {snap_in}>&-
wait "$snap_pid" 2>/dev/null || true
snap_pid=''

mv -f -- "$partial_counts" "$counts"
mv -f -- "$partial" "$dump"
size=$(du -h -- "$dump" | cut -f1)
log "wrote $dump ($size, $(wc -l <"$counts") tables)"

{
	printf '%-48s %12s\n' table rows
	while IFS=$'\t' read -r t n; do printf '%-48s %12s\n' "$t" "$n"; done <"$counts"
}

if ((BACKUP_KEEP_DAYS > 0)); then
	# -mmin: exact age in minutes, unlike -mtime's whole-day rounding.
	find "$BACKUP_DIR" -maxdepth 1 -type f \
		\( -name "$BACKUP_PREFIX-*.dump" -o -name "$BACKUP_PREFIX-*.dump.counts" \
		-o -name ".$BACKUP_PREFIX-*.partial*" \) \
		-mmin +$((BACKUP_KEEP_DAYS * 24 * 60)) -print0 |
		while IFS= read -r -d '' old; do
			rm -f -- "$old"
			log "pruned $old (older than $BACKUP_KEEP_DAYS days)"
		done
fi
