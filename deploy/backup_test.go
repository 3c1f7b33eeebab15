package deploy_test

// TestBackupAndRestoreCheck runs scripts/pg-backup.sh and
// scripts/pg-restore-check.sh for real: dump a database, restore the dump into
// a fresh database on the PostgreSQL 18 test server, compare the row counts,
// catch a counts file that disagrees with the dump, and prune old dumps.
//
// The source is a throwaway PostgreSQL 15 (Debian's server binaries): the
// PostgreSQL 18 of scripts/pg.sh ships no pg_dump, and pg_dump 15 refuses to
// dump an 18 server. The scripts' mechanics do not depend on the versions, and
// restoring a 15 dump into the 18 server is the path a real check takes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	pg15Bin     = "/usr/lib/postgresql/15/bin"
	pgOSUser    = "mailslot-pg" // as in scripts/pg.sh
	bkTimeout   = 2 * time.Minute
	bkSourceDB  = "mailslot_backup_src"
	bkMessages  = 37
	bkAccounts  = 5
	bkAddedRows = 3
)

// bkResult is one script run.
type bkResult struct {
	code           int
	stdout, stderr string
}

func (r bkResult) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// bkEnv is the environment without anything that could steer the scripts or
// the PostgreSQL clients somewhere else (DATABASE_URL from the caller, PG*).
func bkEnv(extra ...string) []string {
	drop := []string{"DATABASE_URL", "SOURCE_URL", "RESTORE_URL", "RESTORE_DB", "DUMP",
		"COMPARE", "KEEP_RESTORE", "BACKUP_DIR", "BACKUP_KEEP_DAYS", "BACKUP_PREFIX"}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(drop, k) || strings.HasPrefix(k, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// bkRun runs a command and returns its exit code and output; it fails the test
// only if the command could not be run at all or timed out.
func bkRun(t *testing.T, env []string, name string, args ...string) bkResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := bkResult{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s: timed out after %v\n%s", name, strings.Join(args, " "), bkTimeout, r)
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return r
}

// bkMust runs a command that must succeed.
func bkMust(t *testing.T, name string, args ...string) string {
	t.Helper()
	r := bkRun(t, bkEnv(), name, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
	}
	return r.stdout
}

// psql15 runs SQL on dbURL with the PostgreSQL 15 psql and returns its
// unaligned, tuples-only output.
func psql15(t *testing.T, dbURL, sql string) string {
	t.Helper()
	r := bkRun(t, bkEnv("PGCLIENTENCODING=UTF8"), pg15Bin+"/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbURL, "-c", sql)
	if r.code != 0 {
		t.Fatalf("psql: %s", r)
	}
	return r.stdout
}

// withDB returns dbURL with its database name replaced by name.
func withDB(t *testing.T, dbURL, name string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parse database URL: %v", err) // no URL in the message: it may hold a password
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPG15 starts a PostgreSQL 15 in a temp dir on a free loopback port (as
// mailslot-pg when running as root: postgres refuses root) and returns the
// admin URL of its postgres database. t.Cleanup stops it.
func startPG15(t *testing.T) string {
	t.Helper()
	for _, f := range []string{"initdb", "pg_ctl", "postgres", "pg_dump", "pg_restore", "psql"} {
		if _, err := os.Stat(filepath.Join(pg15Bin, f)); err != nil {
			t.Fatalf("PostgreSQL 15 %s not found in %s (Debian: apt-get install -y postgresql-15): %v", f, pg15Bin, err)
		}
	}
	dir := t.TempDir()
	var asPG []string // prefix that runs a command as the cluster owner
	if os.Geteuid() == 0 {
		if _, err := user.Lookup(pgOSUser); err != nil {
			bkMust(t, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", pgOSUser)
		}
		u, err := user.Lookup(pgOSUser)
		if err != nil {
			t.Fatalf("look up %s: %v", pgOSUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("chown %s: %v", dir, err)
		}
		// t.TempDir's parents are 0700: let the user traverse them.
		for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				t.Fatalf("stat %s: %v", d, err)
			}
			if fi.Mode().Perm()&0o001 == 0 {
				if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
					t.Fatalf("chmod o+x %s: %v", d, err)
				}
			}
		}
		asPG = []string{"runuser", "-u", pgOSUser, "--"}
	}
	as := func(args ...string) []string { return append(slices.Clone(asPG), args...) }
	run := func(args ...string) bkResult {
		t.Helper()
		a := as(args...)
		return bkRun(t, bkEnv(), a[0], a[1:]...)
	}

	data := filepath.Join(dir, "data")
	if r := run(pg15Bin+"/initdb", "-D", data, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync"); r.code != 0 {
		t.Fatalf("initdb (PostgreSQL 15): %s", r)
	}
	logFile := filepath.Join(dir, "postgres.log")
	var port int
	for attempt := 1; ; attempt++ {
		port = freeLoopbackPort(t)
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c max_connections=20", port, dir)
		r := run(pg15Bin+"/pg_ctl", "-D", data, "-l", logFile, "-o", opts, "-w", "-t", "90", "-s", "start")
		if r.code == 0 {
			break
		}
		logText, _ := os.ReadFile(logFile)
		if attempt == 3 {
			t.Fatalf("pg_ctl start (PostgreSQL 15): %s\n--- postgres.log\n%s", r, logText)
		}
		t.Logf("pg_ctl start on port %d failed (attempt %d), retrying on another port: %s\n%s", port, attempt, r, logText)
	}
	t.Cleanup(func() {
		a := as(pg15Bin+"/pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "60", "-s", "stop")
		ctx, cancel := context.WithTimeout(context.Background(), bkTimeout)
		defer cancel()
		if out, err := exec.CommandContext(ctx, a[0], a[1:]...).CombinedOutput(); err != nil {
			t.Errorf("pg_ctl stop (PostgreSQL 15): %v\n%s", err, out)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// freshPG18DB creates an empty database on the PostgreSQL 18 test server and
// returns its URL; t.Cleanup drops it. The name gets the process id, so that
// two checkouts sharing the server do not collide.
func freshPG18DB(t *testing.T, admin, name string) string {
	t.Helper()
	name = fmt.Sprintf("%s_%d", name, os.Getpid())
	psql15(t, admin, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
	psql15(t, admin, fmt.Sprintf(`CREATE DATABASE %q`, name))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bkTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, pg15Bin+"/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin,
			"-c", fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name)).CombinedOutput()
		if err != nil {
			t.Errorf("drop database %s: %v\n%s", name, err, out)
		}
	})
	return withDB(t, admin, name)
}

// dumpsIn lists the mailslot-*.dump files in dir, sorted.
func dumpsIn(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "mailslot-*.dump"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// wantCheckRows wants a row "table expected restored status" in the output of
// pg-restore-check.sh for each entry.
func wantCheckRows(t *testing.T, out string, rows [][4]string) {
	t.Helper()
	for _, row := range rows {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(row[0]) + `\s+` + regexp.QuoteMeta(row[1]) +
			`\s+` + regexp.QuoteMeta(row[2]) + `\s+` + regexp.QuoteMeta(row[3]) + `\s*$`)
		if !re.MatchString(out) {
			t.Errorf("restore check output has no row %q; stdout:\n%s", strings.Join(row[:], " "), out)
		}
	}
}

func TestBackupAndRestoreCheck(t *testing.T) {
	admin := os.Getenv("MAILSLOT_TEST_DATABASE_URL")
	if admin == "" {
		t.Fatal("MAILSLOT_TEST_DATABASE_URL is not set: it must be the admin URL of the PostgreSQL 18 test server " +
			"(make test sets it; by hand: scripts/pg.sh start; scripts/pg.sh createdb mailslot_test; " +
			"MAILSLOT_TEST_DATABASE_URL=$(scripts/pg.sh url mailslot_test) go test ./deploy/)")
	}
	start := time.Now()
	backupScriptAbs, err := filepath.Abs(backupScript)
	if err != nil {
		t.Fatal(err)
	}
	restoreScriptAbs, err := filepath.Abs(restoreScript)
	if err != nil {
		t.Fatal(err)
	}

	// The restore target must really be PostgreSQL 18.
	if v := strings.TrimSpace(psql15(t, admin, "SHOW server_version_num")); len(v) < 2 || v[:2] != "18" {
		t.Fatalf("MAILSLOT_TEST_DATABASE_URL points at a server with server_version_num %q, want PostgreSQL 18", v)
	}

	// 1. A PostgreSQL 15 source with known contents.
	pg15 := startPG15(t)
	psql15(t, pg15, "CREATE DATABASE "+bkSourceDB)
	src := withDB(t, pg15, bkSourceDB)
	psql15(t, src, fmt.Sprintf(`
CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, %d) g;
CREATE TABLE messages (
  id bigserial PRIMARY KEY,
  account_id int NOT NULL REFERENCES accounts(id),
  body jsonb NOT NULL
);
INSERT INTO messages (account_id, body)
  SELECT 1 + g %% %d, jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b'), 'text', 'héllo ' || g)
  FROM generate_series(1, %d) g;
CREATE SCHEMA audit;
CREATE TABLE audit.events (id int, at timestamptz DEFAULT now());
`, bkAccounts, bkAccounts, bkMessages))
	wantCounts := fmt.Sprintf("audit.events\t0\npublic.accounts\t%d\npublic.messages\t%d\n", bkAccounts, bkMessages)

	backupDir := t.TempDir()
	backupEnv := func(keepDays string) []string {
		return bkEnv(
			"DATABASE_URL="+src,
			"BACKUP_DIR="+backupDir,
			"BACKUP_KEEP_DAYS="+keepDays,
			"PG_DUMP="+pg15Bin+"/pg_dump",
			"PSQL="+pg15Bin+"/psql",
		)
	}
	checkEnv := func(target string, extra ...string) []string {
		return bkEnv(append([]string{
			"BACKUP_DIR=" + backupDir,
			"RESTORE_URL=" + target,
			"PG_RESTORE=" + pg15Bin + "/pg_restore",
			"PSQL=" + pg15Bin + "/psql",
		}, extra...)...)
	}
	// The dump name has one-second resolution: a second backup in the same
	// second is refused, so wait for the next one.
	var lastBackup time.Time
	backup := func(keepDays string) bkResult {
		t.Helper()
		if d := time.Until(lastBackup.Truncate(time.Second).Add(time.Second + 50*time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		r := bkRun(t, backupEnv(keepDays), "bash", backupScriptAbs)
		lastBackup = time.Now()
		return r
	}

	// 2. Backup: a dump and its counts file, the table on stdout.
	r := backup("14")
	if r.code != 0 {
		t.Fatalf("pg-backup.sh: %s", r)
	}
	dumps := dumpsIn(t, backupDir)
	if len(dumps) != 1 || !regexp.MustCompile(`/mailslot-\d{8}T\d{6}Z\.dump$`).MatchString(dumps[0]) {
		t.Fatalf("want one mailslot-YYYYMMDDTHHMMSSZ.dump in %s, got %q\n%s", backupDir, dumps, r)
	}
	dump1 := dumps[0]
	if fi, err := os.Stat(dump1); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("dump %s: want a non-empty file of mode 0600, got %v (err %v)", dump1, fi.Mode(), err)
	}
	if got := readFile(t, dump1+".counts"); got != wantCounts {
		t.Errorf("%s.counts:\n%q\nwant\n%q", dump1, got, wantCounts)
	}
	for _, row := range []string{"audit.events 0", "public.accounts " + strconv.Itoa(bkAccounts), "public.messages " + strconv.Itoa(bkMessages)} {
		f := strings.Fields(row)
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(f[0]) + `\s+` + f[1] + `\s*$`).MatchString(r.stdout) {
			t.Errorf("pg-backup.sh stdout has no row %q:\n%s", row, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, src) {
		t.Errorf("pg-backup.sh printed DATABASE_URL:\n%s", r)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(backupDir, ".*partial*")); len(leftovers) > 0 {
		t.Errorf("partial files left behind: %q", leftovers)
	}

	// 3. Restore check into a fresh PostgreSQL 18 database: every count matches.
	target := freshPG18DB(t, admin, "mailslot_restore_test_ok")
	r = bkRun(t, checkEnv(target), "bash", restoreScriptAbs)
	if r.code != 0 {
		t.Fatalf("pg-restore-check.sh: want exit 0, got %s", r)
	}
	wantCheckRows(t, r.stdout, [][4]string{
		{"audit.events", "0", "0", "ok"},
		{"public.accounts", strconv.Itoa(bkAccounts), strconv.Itoa(bkAccounts), "ok"},
		{"public.messages", strconv.Itoa(bkMessages), strconv.Itoa(bkMessages), "ok"},
	})
	if !strings.Contains(r.stderr, "restoring into a PostgreSQL 18 database") ||
		!strings.Contains(r.stderr, "from PostgreSQL 15") || !strings.Contains(r.stderr, dump1) {
		t.Errorf("pg-restore-check.sh stderr does not say it restored %s (PostgreSQL 15) into PostgreSQL 18:\n%s", dump1, r.stderr)
	}
	// The data itself came through, jsonb included.
	wantSum := bkMessages * (bkMessages + 1) / 2
	if got := strings.TrimSpace(psql15(t, target,
		`SELECT sum((body->>'n')::int) || ' ' || count(*) FILTER (WHERE body->'tags' = '["a","b"]' AND body->>'text' LIKE 'héllo %') FROM messages`)); got != fmt.Sprintf("%d %d", wantSum, bkMessages) {
		t.Errorf("restored messages.body: got sum/count %q, want \"%d %d\"", got, wantSum, bkMessages)
	}

	// The default target (what `make pg-restore-check` uses): a database that
	// the script creates with scripts/pg.sh and drops at exit. Only when the
	// test server is scripts/pg.sh's own, so that pg.sh never starts another.
	if au, err := url.Parse(admin); err == nil && au.Port() != "" {
		pgSH, _ := filepath.Abs("../scripts/pg.sh")
		shEnv := bkEnv("MAILSLOT_PG_PORT=" + au.Port())
		if st := bkRun(t, shEnv, pgSH, "status"); st.code == 0 && strings.Contains(st.stdout, "127.0.0.1:"+au.Port()+",") {
			db := fmt.Sprintf("mailslot_restore_test_default_%d", os.Getpid())
			r = bkRun(t, append(shEnv,
				"BACKUP_DIR="+backupDir, "PG_SH="+pgSH, "RESTORE_DB="+db,
				"PG_RESTORE="+pg15Bin+"/pg_restore", "PSQL="+pg15Bin+"/psql"), "bash", restoreScriptAbs)
			if r.code != 0 {
				t.Errorf("pg-restore-check.sh into a database of scripts/pg.sh: want exit 0, got %s", r)
			}
			wantCheckRows(t, r.stdout, [][4]string{{"public.messages", strconv.Itoa(bkMessages), strconv.Itoa(bkMessages), "ok"}})
			if left := strings.TrimSpace(psql15(t, admin, fmt.Sprintf("SELECT count(*) FROM pg_database WHERE datname = '%s'", db))); left != "0" {
				t.Errorf("pg-restore-check.sh left its database %s behind", db)
				psql15(t, admin, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, db))
			}
		} else {
			t.Logf("the test server is not scripts/pg.sh's (status: %s): the default restore target (pg.sh createdb) is not exercised", strings.TrimSpace(st.stdout))
		}
	}

	// A non-empty target is refused (exit 2), not restored over.
	r = bkRun(t, checkEnv(target), "bash", restoreScriptAbs)
	if r.code != 2 || !strings.Contains(r.stderr, "already has tables") {
		t.Errorf("pg-restore-check.sh into a non-empty database: want exit 2 and 'already has tables', got %s", r)
	}

	// 4. A counts file that disagrees with the dump: exit 1, the table named.
	counts1 := readFile(t, dump1+".counts")
	tampered := strings.Replace(counts1, fmt.Sprintf("public.messages\t%d\n", bkMessages), fmt.Sprintf("public.messages\t%d\n", bkMessages+1), 1)
	tampered = strings.Replace(tampered, "audit.events\t0\n", "", 1)
	if tampered == counts1 || strings.Contains(tampered, "audit.events") {
		t.Fatalf("could not tamper with the counts file:\n%s", counts1)
	}
	if err := os.WriteFile(dump1+".counts", []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	r = bkRun(t, checkEnv(freshPG18DB(t, admin, "mailslot_restore_test_bad")), "bash", restoreScriptAbs)
	if r.code != 1 {
		t.Errorf("pg-restore-check.sh with a tampered counts file: want exit 1, got %s", r)
	}
	wantCheckRows(t, r.stdout, [][4]string{
		{"audit.events", "-", "0", "MISMATCH"},
		{"public.accounts", strconv.Itoa(bkAccounts), strconv.Itoa(bkAccounts), "ok"},
		{"public.messages", strconv.Itoa(bkMessages + 1), strconv.Itoa(bkMessages), "MISMATCH"},
	})
	if !strings.Contains(r.stderr, "MISMATCH") {
		t.Errorf("pg-restore-check.sh stderr does not report the mismatch:\n%s", r.stderr)
	}
	if err := os.WriteFile(dump1+".counts", []byte(counts1), 0o600); err != nil {
		t.Fatal(err)
	}

	// 5. The source changes after the dump: the dump's own snapshot counts
	// still match (COMPARE=auto), live counts do not (COMPARE=live).
	psql15(t, src, fmt.Sprintf(`INSERT INTO messages (account_id, body) SELECT 1, jsonb_build_object('n', 0) FROM generate_series(1, %d)`, bkAddedRows))
	r = bkRun(t, checkEnv(freshPG18DB(t, admin, "mailslot_restore_test_snap")), "bash", restoreScriptAbs)
	if r.code != 0 {
		t.Errorf("pg-restore-check.sh (snapshot counts) after the source changed: want exit 0, got %s", r)
	}
	r = bkRun(t, checkEnv(freshPG18DB(t, admin, "mailslot_restore_test_live"), "COMPARE=live", "SOURCE_URL="+src), "bash", restoreScriptAbs)
	if r.code != 1 {
		t.Errorf("pg-restore-check.sh COMPARE=live after the source changed: want exit 1, got %s", r)
	}
	wantCheckRows(t, r.stdout, [][4]string{
		{"public.messages", strconv.Itoa(bkMessages + bkAddedRows), strconv.Itoa(bkMessages), "MISMATCH"},
	})
	if strings.Contains(r.stdout+r.stderr, src) || strings.Contains(r.stdout+r.stderr, admin) {
		t.Errorf("pg-restore-check.sh printed a database URL:\n%s", r)
	}

	// 6. Retention: a dump (and its counts) older than BACKUP_KEEP_DAYS is
	// pruned by the next backup; a younger one and other files are kept.
	old := time.Now().Add(-15 * 24 * time.Hour)
	young := time.Now().Add(-13 * 24 * time.Hour)
	for _, f := range []string{dump1, dump1 + ".counts"} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	// Named as an older dump, so the restore check must not pick it: it is
	// garbage and would fail.
	youngDump := filepath.Join(backupDir, "mailslot-20000101T000000Z.dump")
	other := filepath.Join(backupDir, "notes.txt")
	for _, f := range []string{youngDump, other} {
		if err := os.WriteFile(f, []byte("not a dump\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(youngDump, young, young); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(other, old, old); err != nil {
		t.Fatal(err)
	}
	r = backup("14")
	if r.code != 0 {
		t.Fatalf("second pg-backup.sh: %s", r)
	}
	for _, f := range []string{dump1, dump1 + ".counts"} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is 15 days old: want it pruned (BACKUP_KEEP_DAYS=14), stat: %v\n%s", f, err, r)
		}
		if !strings.Contains(r.stderr, "pruned "+f) {
			t.Errorf("pg-backup.sh stderr does not report pruning %s:\n%s", f, r.stderr)
		}
	}
	for _, f := range []string{youngDump, other} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: want it kept, got %v", f, err)
		}
	}
	dumps = dumpsIn(t, backupDir)
	if len(dumps) != 2 || dumps[0] != youngDump {
		t.Fatalf("after the second backup want %s and one new dump, got %q", youngDump, dumps)
	}
	dump2 := dumps[1]
	wantCounts2 := fmt.Sprintf("audit.events\t0\npublic.accounts\t%d\npublic.messages\t%d\n", bkAccounts, bkMessages+bkAddedRows)
	if got := readFile(t, dump2+".counts"); got != wantCounts2 {
		t.Errorf("%s.counts:\n%q\nwant\n%q", dump2, got, wantCounts2)
	}

	// The check takes the newest dump by name: the new one.
	r = bkRun(t, checkEnv(freshPG18DB(t, admin, "mailslot_restore_test_new")), "bash", restoreScriptAbs)
	if r.code != 0 || !strings.Contains(r.stderr, "checking "+dump2) {
		t.Errorf("pg-restore-check.sh after the second backup: want exit 0 checking %s, got %s", dump2, r)
	}
	wantCheckRows(t, r.stdout, [][4]string{
		{"public.messages", strconv.Itoa(bkMessages + bkAddedRows), strconv.Itoa(bkMessages + bkAddedRows), "ok"},
	})

	// BACKUP_KEEP_DAYS=0 keeps everything, however old.
	for _, f := range []string{dump2, dump2 + ".counts", youngDump} {
		if err := os.Chtimes(f, old.Add(-365*24*time.Hour), old.Add(-365*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	r = backup("0")
	if r.code != 0 {
		t.Fatalf("third pg-backup.sh (BACKUP_KEEP_DAYS=0): %s", r)
	}
	if strings.Contains(r.stderr, "pruned") {
		t.Errorf("BACKUP_KEEP_DAYS=0 pruned something:\n%s", r.stderr)
	}
	for _, f := range []string{dump2, dump2 + ".counts", youngDump} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s with BACKUP_KEEP_DAYS=0: want it kept, got %v", f, err)
		}
	}
	if n := len(dumpsIn(t, backupDir)); n != 3 {
		t.Errorf("after the third backup want 3 dumps, got %d", n)
	}
	t.Logf("backup and restore checks took %v", time.Since(start).Round(time.Millisecond))
}
