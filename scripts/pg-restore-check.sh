#!/usr/bin/env bash
# scripts/pg-restore-check.sh - prove that a backup restores: restore the
# newest dump into a fresh PostgreSQL 18 database and compare the row count
# of every table with the source. `make pg-restore-check` runs it.
#
# What the restore is compared with (COMPARE):
#   snapshot  the .counts file scripts/pg-backup.sh wrote beside the dump:
#             exact counts from the very snapshot that was dumped, so a live
#             database that kept changing cannot cause a false mismatch.
#   live      counts taken now from SOURCE_URL (or DATABASE_URL). Right for a
#             quiet source, e.g. a local database in a test.
#   auto      (default) snapshot when the .counts file exists, else live.
#
# Where it restores:
#   default   a new database on the local PostgreSQL 18 server of
#             scripts/pg.sh (`pg.sh createdb`, `pg.sh url`), dropped at exit
#             unless KEEP_RESTORE=1.
#   RESTORE_URL=...  an existing, empty database (a CI service container,
#             say); it is neither created nor dropped.
#
# Env (everything comes from the environment; there are no arguments):
#   BACKUP_DIR     where the dumps are (default ./backups)
#   BACKUP_PREFIX  dump name prefix (default mailslot)
#   DUMP           a dump file to check instead of the newest one
#   COMPARE        auto | snapshot | live (default auto)
#   SOURCE_URL     the live source (default DATABASE_URL); never printed
#   RESTORE_URL    see above; never printed
#   RESTORE_DB     name of the database to create (default
#                  mailslot_restore_check_<UTC time>_<pid>)
#   KEEP_RESTORE   1 keeps the created database
#   PG_RESTORE, PSQL  commands to run (may hold several words). Default: from
#                  the PostgreSQL 18 bin dir of scripts/pg.sh (`pg.sh bin`),
#                  else /usr/lib/postgresql/18/bin, else PATH with a warning.
#   PG_SH          path of scripts/pg.sh (default: beside this script)
#
# Output: a table of table, expected rows, restored rows, status on stdout;
# progress on stderr.
# Exit: 0 every table restored with the expected rows; 1 a count or a table
# differs; 2 bad configuration (no dump, no source, target not empty);
# 3 the restore or a tool failed.
set -euo pipefail

readonly PG_MAJOR=18
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
PG_SH=${PG_SH:-$HERE/pg.sh}
BACKUP_DIR=${BACKUP_DIR:-./backups}
BACKUP_PREFIX=${BACKUP_PREFIX:-mailslot}
COMPARE=${COMPARE:-auto}
SOURCE_URL=${SOURCE_URL:-${DATABASE_URL:-}}

log() { printf 'pg-restore-check: %s\n' "$*" >&2; }
die() {
	local code=$1
	shift
	printf 'pg-restore-check: error: %s\n' "$*" >&2
	exit "$code"
}

case $COMPARE in auto | snapshot | live) ;; *) die 2 "COMPARE=$COMPARE: want auto, snapshot or live" ;; esac

# shellcheck source=scripts/pg-tools.sh
. "$HERE/pg-tools.sh"

find_tool pg_restore PG_RESTORE
find_tool psql PSQL quiet
read -ra restore_cmd <<<"$PG_RESTORE"
read -ra psql_cmd <<<"$PSQL"

# Same query as scripts/pg-backup.sh: exact rows per ordinary table.
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

work=$(mktemp -d)
created_db=''
cleanup() {
	local rc=$?
	if [[ -n $created_db ]]; then
		if [[ ${KEEP_RESTORE:-} == 1 ]]; then
			log "kept database $created_db (KEEP_RESTORE=1); drop it with: $PG_SH dropdb $created_db"
		else
			"$PG_SH" dropdb "$created_db" >/dev/null 2>&1 || log "warning: could not drop $created_db"
		fi
	fi
	rm -rf -- "$work"
	exit "$rc"
}
trap cleanup EXIT

# counts URL FILE: table<TAB>rows for every table of URL into FILE.
counts() {
	"${psql_cmd[@]}" -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 -d "$1" -c "$COUNT_SQL" >"$2" 2>"$work/psql.err" ||
		die 3 "counting rows failed: $(head -n 3 "$work/psql.err")"
}

# 1. The dump: DUMP, or the newest one in BACKUP_DIR (names sort by time).
if [[ -z ${DUMP:-} ]]; then
	[[ -d $BACKUP_DIR ]] || die 2 "BACKUP_DIR=$BACKUP_DIR does not exist; run 'make pg-backup' first"
	DUMP=$(find "$BACKUP_DIR" -maxdepth 1 -type f -name "$BACKUP_PREFIX-*.dump" | LC_ALL=C sort | tail -n 1)
	[[ -n $DUMP ]] || die 2 "no $BACKUP_PREFIX-*.dump in $BACKUP_DIR; run 'make pg-backup' first"
fi
[[ -s $DUMP ]] || die 2 "$DUMP is missing or empty"
log "checking $DUMP"

# 2. It must be a readable archive, and pg_restore must be new enough for it.
"${restore_cmd[@]}" --list "$DUMP" >"$work/toc" 2>"$work/toc.err" ||
	die 3 "pg_restore cannot read $DUMP: $(head -n 3 "$work/toc.err")"
dumped_by=$(sed -nE 's/^;[[:space:]]+Dumped by pg_dump version: ([0-9]+).*/\1/p' "$work/toc" | head -n 1)
dumped_from=$(sed -nE 's/^;[[:space:]]+Dumped from database version: ([0-9]+).*/\1/p' "$work/toc" | head -n 1)

# 3. What to compare with.
expected=$work/expected
if [[ $COMPARE == auto ]]; then
	if [[ -f $DUMP.counts ]]; then COMPARE=snapshot; else COMPARE=live; fi
fi
if [[ $COMPARE == snapshot ]]; then
	[[ -f $DUMP.counts ]] || die 2 "$DUMP.counts is missing (dumps from scripts/pg-backup.sh have one); use COMPARE=live with SOURCE_URL"
	cp -- "$DUMP.counts" "$expected"
	log "expected rows: the dump's own snapshot ($DUMP.counts)"
else
	[[ -n $SOURCE_URL ]] || die 2 "COMPARE=live needs SOURCE_URL (or DATABASE_URL): the database the dump was taken from"
	counts "$SOURCE_URL" "$expected"
	log "expected rows: the live source, now (a source that changed since the dump will not match)"
fi

# 4. The target: RESTORE_URL, or a fresh database on the local PG 18 server.
if [[ -n ${RESTORE_URL:-} ]]; then
	target=$RESTORE_URL
else
	[[ -x $PG_SH ]] || die 2 "$PG_SH not found or not executable: set RESTORE_URL to an empty database, or PG_SH to scripts/pg.sh"
	RESTORE_DB=${RESTORE_DB:-mailslot_restore_check_$(date -u +%Y%m%d_%H%M%S)_$$}
	[[ $RESTORE_DB =~ ^[a-z_][a-z0-9_]*$ ]] || die 2 "RESTORE_DB=$RESTORE_DB: use lower-case letters, digits and '_'"
	"$PG_SH" createdb "$RESTORE_DB" >/dev/null || die 3 "'$PG_SH createdb $RESTORE_DB' failed"
	created_db=$RESTORE_DB
	target=$("$PG_SH" url "$RESTORE_DB")
fi
server_num=$("${psql_cmd[@]}" -X -A -t -v ON_ERROR_STOP=1 -d "$target" -c 'SHOW server_version_num' 2>"$work/psql.err") ||
	die 3 "cannot connect to the restore target: $(head -n 3 "$work/psql.err")"
server_major=$((server_num / 10000))
((server_major >= PG_MAJOR)) ||
	log "warning: the restore target runs PostgreSQL $server_major, not $PG_MAJOR"
if [[ -n $dumped_from ]] && ((server_major < dumped_from)); then
	log "warning: restoring a dump of PostgreSQL $dumped_from into an older server ($server_major)"
fi
counts "$target" "$work/before"
[[ ! -s $work/before ]] || die 2 "the restore target already has tables ($(wc -l <"$work/before")); give an empty database"

# 5. Restore: all or nothing, without the source's roles and grants (they do
# not exist on the check server).
log "restoring into a PostgreSQL $server_major database (dump made by pg_dump ${dumped_by:-?} from PostgreSQL ${dumped_from:-?})"
"${restore_cmd[@]}" --no-owner --no-privileges --exit-on-error --single-transaction \
	-d "$target" "$DUMP" 2>"$work/restore.err" ||
	die 3 "pg_restore failed: $(tail -n 5 "$work/restore.err")"
counts "$target" "$work/restored"

# 6. Compare every table on either side; print the table, exit 1 on a difference.
awk -F '\t' '
	FNR == NR { want[$1] = $2; seen[$1] = 1; next }
	{ got[$1] = $2; seen[$1] = 1 }
	END {
		n = 0
		for (t in seen) names[++n] = t
		# insertion sort: names are few, and awk has no portable sort
		for (i = 2; i <= n; i++) { v = names[i]; for (j = i - 1; j > 0 && names[j] > v; j--) names[j + 1] = names[j]; names[j + 1] = v }
		printf "%-48s %12s %12s  %s\n", "table", "expected", "restored", "status"
		bad = 0
		for (i = 1; i <= n; i++) {
			t = names[i]
			w = (t in want) ? want[t] : "-"
			g = (t in got) ? got[t] : "-"
			s = (w == g) ? "ok" : "MISMATCH"
			if (s != "ok") bad++
			printf "%-48s %12s %12s  %s\n", t, w, g, s
		}
		exit (bad > 0)
	}' "$expected" "$work/restored" && rc=0 || rc=$?

tables=$(wc -l <"$work/restored")
if ((rc == 0)); then
	log "ok: $tables tables restored with the expected row counts"
else
	log "MISMATCH: the restore differs from the $COMPARE counts (table above)"
	exit 1
fi
