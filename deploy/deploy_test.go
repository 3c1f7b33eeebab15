// Package deploy_test holds the deployment files to the rules of
// shared/seed/backend-service-rules.md (Fly.io, OCI, Fly Postgres,
// Migrations) as translated in DESIGN.md: a 256 MB Fly VM with GOMEMLIMIT, no
// migration tool or release_command in production, the outbox on a volume,
// health and readiness checks, metrics only on the private network, Postgres
// sized for the 1 GB OCI VM, and make targets that refuse to run flyctl
// without flyctl or a login.
//
// Each rule is a checker that returns violations. TestRepository* runs the
// checkers on the real files and wants none; TestCheckersCatch* breaks each
// rule in a copy of the real file and wants that rule, and only a violation
// of it, reported, so no rule can pass vacuously.
package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/pelletier/go-toml/v2"
)

// Paths relative to this package's directory (go test runs in deploy/).
const (
	flyTOMLPath      = "../fly.toml"
	dockerfilePath   = "../Dockerfile"
	dockerignorePath = "../.dockerignore"
	composePath      = "oci/compose.yaml"
	deployMKPath     = "deploy.mk"
	workflowPath     = "../.github/workflows/pg-backup.yml"
	backupScript     = "../scripts/pg-backup.sh"
	restoreScript    = "../scripts/pg-restore-check.sh"
)

const (
	dataDir     = "/data"
	privatePort = 9090
	publicPort  = 8080
	mib         = int64(1) << 20

	// edgeRSSBudget is the resident set the edge keeps to on its 256 MB VM,
	// in every make bench scenario and under a webhook flood
	// (docs/ARCHITECTURE.md, "Memory"). outsideGoLimit is what the process
	// holds that GOMEMLIMIT does not count, rounded up from
	// docs/BENCHMARKS.md: the binary's mapped code and data (~30 MiB) and
	// SQLite's page caches in modernc's allocator (~6 MiB).
	edgeRSSBudget  = 128 * mib
	outsideGoLimit = 40 * mib
	// minGoMemLimit leaves the Go runtime room for a few webhook bodies
	// beside the working set.
	minGoMemLimit = 48 * mib
)

// violation is one broken rule: rule is a stable ID, msg says what is wrong.
type violation struct{ rule, msg string }

func (v violation) String() string { return v.rule + ": " + v.msg }

type violations []violation

func (vs *violations) add(rule, format string, args ...any) {
	*vs = append(*vs, violation{rule, fmt.Sprintf(format, args...)})
}

func (vs violations) rules() []string {
	var out []string
	for _, v := range vs {
		if !slices.Contains(out, v.rule) {
			out = append(out, v.rule)
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// Sizes and durations.

var sizeRe = regexp.MustCompile(`^\s*([0-9]+)\s*([A-Za-z]*)\s*$`)

// parseBytes reads a memory size as Fly ("256mb", "1gb"), Docker ("480m")
// and Go ("200MiB") write them; all three mean binary units.
func parseBytes(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: not a number with a unit", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	mult := map[string]int64{
		"": 1, "b": 1,
		"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	}[strings.ToLower(m[2])]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, m[2])
	}
	return n * mult, nil
}

var goMemLimitRe = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

// parseGoMemLimit accepts exactly what the Go runtime accepts in GOMEMLIMIT
// (a typo such as "200MB" makes the runtime refuse to start).
func parseGoMemLimit(s string) (int64, error) {
	m := goMemLimitRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("GOMEMLIMIT=%q is not <number>[B|KiB|MiB|GiB|TiB]", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, nil
}

// asString renders a scalar from a TOML or YAML document.
func asString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	case int:
		return int64(x), true
	case float64:
		return int64(x), x == float64(int64(x))
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// tables returns the tables under key, whether written as [key] or [[key]].
func tables(doc map[string]any, key string) []map[string]any {
	switch x := doc[key].(type) {
	case map[string]any:
		return []map[string]any{x}
	case []any:
		var out []map[string]any
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	case []map[string]any:
		return x
	}
	return nil
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// portOf returns the port of a listen address such as ":8080" or "[::]:9090".
func portOf(addr string) string {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return ""
	}
	return addr[i+1:]
}

// walkKeys calls fn for every key at every depth of a decoded document.
func walkKeys(v any, path string, fn func(path, key string, val any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			fn(path, k, val)
			walkKeys(val, path+"."+k, fn)
		}
	case []any:
		for i, e := range x {
			walkKeys(e, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

// ---------------------------------------------------------------------------
// fly.toml

func checkFlyTOML(src string) violations {
	var vs violations
	var doc map[string]any
	if err := toml.Unmarshal([]byte(src), &doc); err != nil {
		vs.add("parse", "fly.toml: %v", err)
		return vs
	}
	env := mapOf(doc["env"])

	// [[vm]] memory = '256mb' (seed, Resource Constraints).
	var vmBytes int64
	vms := tables(doc, "vm")
	if len(vms) == 0 {
		vs.add("vm-memory-256mb", "no [[vm]] section")
	}
	for _, vm := range vms {
		mem := asString(vm["memory"])
		n, err := parseBytes(mem)
		switch {
		case err != nil:
			vs.add("vm-memory-256mb", "[[vm]] memory: %v", err)
		case n != 256*mib:
			vs.add("vm-memory-256mb", "[[vm]] memory = %q, want '256mb'", mem)
		default:
			vmBytes = n
		}
	}

	// No release_command anywhere (seed, Migrations): not in [deploy], not
	// under any other table, not a process that runs mailslotctl.
	walkKeys(doc, "", func(path, key string, val any) {
		if key == "release_command" || key == "seed_command" {
			vs.add("no-release-command", "%s.%s = %q: migrations run only from `mailslotctl migrate` (make ci)", path, key, asString(val))
		}
	})
	for name, cmd := range mapOf(doc["processes"]) {
		if c := asString(cmd); strings.Contains(c, "mailslotctl") || strings.Contains(c, "migrate") {
			vs.add("no-release-command", "process %s runs %q", name, c)
		}
	}

	// The outbox lives on a volume mounted at the data dir.
	if got := asString(env["MAILSLOT_DATA_DIR"]); got != dataDir {
		vs.add("mount-data-dir", "[env] MAILSLOT_DATA_DIR = %q, want %q", got, dataDir)
	}
	mounted := false
	for _, m := range tables(doc, "mounts") {
		if asString(m["destination"]) == dataDir && asString(m["source"]) != "" {
			mounted = true
		}
	}
	if !mounted {
		vs.add("mount-data-dir", "no [[mounts]] with a source and destination = %q", dataDir)
	}

	// Public service on 8080 with liveness and readiness checks.
	hs := mapOf(doc["http_service"])
	if hs == nil {
		vs.add("health-checks", "no [http_service]")
	}
	if p, _ := asInt(hs["internal_port"]); p != publicPort {
		vs.add("health-checks", "[http_service] internal_port = %v, want %d", hs["internal_port"], publicPort)
	}
	if portOf(asString(env["MAILSLOT_ADDR"])) != strconv.Itoa(publicPort) {
		vs.add("health-checks", "[env] MAILSLOT_ADDR = %q, want port %d (the http_service's internal_port)", asString(env["MAILSLOT_ADDR"]), publicPort)
	}
	paths := map[string]bool{}
	for _, c := range tables(hs, "checks") {
		path := asString(c["path"])
		paths[path] = true
		var d [3]time.Duration
		for i, k := range []string{"grace_period", "interval", "timeout"} {
			v, err := time.ParseDuration(asString(c[k]))
			if err != nil || v <= 0 {
				vs.add("health-checks", "check %s: %s = %q is not a positive duration", path, k, asString(c[k]))
			}
			d[i] = v
		}
		if d[2] >= d[1] {
			vs.add("health-checks", "check %s: timeout %v is not below interval %v", path, d[2], d[1])
		}
	}
	for _, want := range []string{"/healthz", "/readyz"} {
		if !paths[want] {
			vs.add("health-checks", "no [[http_service.checks]] with path = %q", want)
		}
	}

	// Metrics scraped on the private port; the private port never exposed.
	ms := tables(doc, "metrics")
	ok := false
	for _, m := range ms {
		if p, _ := asInt(m["port"]); p == privatePort && asString(m["path"]) == "/metrics" {
			ok = true
		}
	}
	if !ok {
		vs.add("metrics-private-port", "no [metrics] with port = %d and path = \"/metrics\"", privatePort)
	}
	if portOf(asString(env["MAILSLOT_PRIVATE_ADDR"])) != strconv.Itoa(privatePort) {
		vs.add("metrics-private-port", "[env] MAILSLOT_PRIVATE_ADDR = %q does not listen on %d, where [metrics] scrapes", asString(env["MAILSLOT_PRIVATE_ADDR"]), privatePort)
	}
	if p, _ := asInt(hs["internal_port"]); p == privatePort {
		vs.add("private-port-not-exposed", "[http_service] internal_port is the private port %d", privatePort)
	}
	for i, s := range tables(doc, "services") {
		if p, _ := asInt(s["internal_port"]); p == privatePort {
			vs.add("private-port-not-exposed", "[[services]] #%d internal_port = %d exposes the private listener", i, privatePort)
		}
		for _, port := range tables(s, "ports") {
			if p, _ := asInt(port["port"]); p == privatePort {
				vs.add("private-port-not-exposed", "[[services]] #%d publishes port %d", i, privatePort)
			}
		}
	}

	// Edges keep syncing between requests: never auto-stopped or suspended.
	switch v := hs["auto_stop_machines"].(type) {
	case bool:
		if v {
			vs.add("auto-stop-off", "auto_stop_machines = true stops idle edges (want \"off\")")
		}
	case string:
		if v != "off" {
			vs.add("auto-stop-off", "auto_stop_machines = %q; an edge must keep syncing (want \"off\")", v)
		}
	default:
		vs.add("auto-stop-off", "auto_stop_machines is not set (want \"off\")")
	}

	// Secrets are set with fly secrets, never in the committed [env].
	for _, k := range []string{"MAILSLOT_IP_PEPPER", "MAILSLOT_TOKEN_KEY", "MAILSLOT_ADMIN_TOKEN", "DATABASE_URL", "MAILSLOT_REPLICA_URL"} {
		if _, ok := env[k]; ok {
			vs.add("no-secrets-in-env", "[env] %s is a secret: set it with make fly-secrets / fly-pg-attach", k)
		}
	}

	// GOMEMLIMIT, where fly.toml sets it, fits the VM.
	if s, ok := env["GOMEMLIMIT"]; ok {
		n, err := parseGoMemLimit(asString(s))
		if err != nil {
			vs.add("gomemlimit-below-vm", "[env] %v", err)
		} else if vmBytes > 0 && n >= vmBytes {
			vs.add("gomemlimit-below-vm", "[env] GOMEMLIMIT %s is not below the VM's %d MiB", asString(s), vmBytes/mib)
		} else if n > edgeRSSBudget-outsideGoLimit || n < minGoMemLimit {
			vs.add("gomemlimit-below-vm", "[env] GOMEMLIMIT %s, want %d to %d MiB: the edge's %d MiB budget less ~%d MiB outside the Go runtime",
				asString(s), minGoMemLimit/mib, (edgeRSSBudget-outsideGoLimit)/mib, edgeRSSBudget/mib, outsideGoLimit/mib)
		}
	}

	// Soft stop: SIGTERM, and time to finish the batch.
	if asString(doc["kill_signal"]) != "SIGTERM" {
		vs.add("soft-stop", "kill_signal = %q, want \"SIGTERM\"", asString(doc["kill_signal"]))
	}
	kt := doc["kill_timeout"]
	var killTimeout time.Duration
	if n, ok := asInt(kt); ok {
		killTimeout = time.Duration(n) * time.Second
	} else {
		killTimeout, _ = time.ParseDuration(asString(kt))
	}
	if killTimeout < 10*time.Second || killTimeout > 300*time.Second {
		vs.add("soft-stop", "kill_timeout = %v, want 10s..300s for a soft stop", kt)
	}
	return vs
}

// ---------------------------------------------------------------------------
// Dockerfile: a small parser, enough for this repository's Dockerfile.

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

type stage struct {
	index  int
	name   string // lower case, "" when unnamed
	base   string
	instrs []instruction
}

type dockerfile struct{ stages []stage }

// parseDockerfile splits src into stages of instructions: comments and blank
// lines dropped, backslash continuations joined (comment lines inside a
// continuation are skipped, as BuildKit does). Heredocs are not supported.
func parseDockerfile(src string) (dockerfile, error) {
	var d dockerfile
	var cur strings.Builder
	start := 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			var words []string
			for _, w := range f {
				if !strings.HasPrefix(w, "--") {
					words = append(words, w)
				}
			}
			if len(words) == 0 {
				return fmt.Errorf("line %d: FROM without an image", start)
			}
			st := stage{index: len(d.stages), base: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = strings.ToLower(words[2])
			}
			d.stages = append(d.stages, st)
			return nil
		}
		if len(d.stages) == 0 {
			if in.cmd == "ARG" {
				return nil // global ARG before the first FROM
			}
			return fmt.Errorf("line %d: %s before FROM", start, in.cmd)
		}
		s := &d.stages[len(d.stages)-1]
		s.instrs = append(s.instrs, in)
		return nil
	}
	continuing := false
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimRight(raw, " \t\r")
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (!continuing && trimmed == "") {
			continue
		}
		if !continuing {
			start = i + 1
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continuing = true
			continue
		}
		cur.WriteString(line)
		continuing = false
		if err := flush(); err != nil {
			return d, err
		}
	}
	if continuing {
		return d, errors.New("Dockerfile ends inside a line continuation")
	}
	return d, nil
}

// stageRef resolves a FROM base or --from value to a stage index, or -1.
func (d dockerfile) stageRef(ref string, before int) int {
	ref = strings.ToLower(ref)
	for i := 0; i < before; i++ {
		if d.stages[i].name != "" && d.stages[i].name == ref {
			return i
		}
	}
	if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < before {
		return n
	}
	return -1
}

var fromFlagRe = regexp.MustCompile(`(?:^|[\s,])(?:--)?from=([^\s,]+)`)

// closure returns the stages whose content can reach stage i's image: i, its
// FROM parent stages, and stages it copies from or mounts (transitively).
func (d dockerfile) closure(i int) []int {
	seen := map[int]bool{}
	var visit func(int)
	visit = func(j int) {
		if j < 0 || seen[j] {
			return
		}
		seen[j] = true
		s := d.stages[j]
		visit(d.stageRef(s.base, j))
		for _, in := range s.instrs {
			if in.cmd != "COPY" && in.cmd != "ADD" && in.cmd != "RUN" {
				continue
			}
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") {
					if in.cmd != "RUN" {
						break // flags come first in COPY/ADD
					}
					continue
				}
				for _, m := range fromFlagRe.FindAllStringSubmatch(w, -1) {
					visit(d.stageRef(m[1], j))
				}
			}
		}
	}
	visit(i)
	var out []int
	for j := range d.stages {
		if seen[j] {
			out = append(out, j)
		}
	}
	return out
}

// envWords splits an ENV argument list into words, keeping quoted text.
func envWords(s string) []string {
	var out []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// env returns the environment stage i's image gets from ENV instructions,
// including those of parent stages.
func (d dockerfile) env(i int) map[string]string {
	env := map[string]string{}
	if p := d.stageRef(d.stages[i].base, i); p >= 0 {
		env = d.env(p)
	}
	for _, in := range d.stages[i].instrs {
		if in.cmd != "ENV" {
			continue
		}
		words := envWords(in.args)
		if len(words) > 0 && !strings.Contains(words[0], "=") {
			env[words[0]] = strings.Join(words[1:], " ") // legacy ENV key value
			continue
		}
		for _, w := range words {
			if k, v, ok := strings.Cut(w, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

// last returns the last instruction cmd of stage i, or nil.
func (d dockerfile) last(i int, cmd string) *instruction {
	var out *instruction
	for j := range d.stages[i].instrs {
		if d.stages[i].instrs[j].cmd == cmd {
			out = &d.stages[i].instrs[j]
		}
	}
	return out
}

// execForm decodes a JSON exec-form argument (["/mailslot", "serve"]).
func execForm(args string) ([]string, bool) {
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		return nil, false
	}
	return out, true
}

var (
	goBuildRe = regexp.MustCompile(`\bgo\s+build\b`)
	migrateRe = regexp.MustCompile(`\bmigrat`)
	cgoRe     = regexp.MustCompile(`\bCGO_ENABLED=(\S*)`)
)

func checkDockerfile(src string) violations {
	var vs violations
	d, err := parseDockerfile(src)
	if err != nil {
		vs.add("parse", "Dockerfile: %v", err)
		return vs
	}
	if len(d.stages) == 0 {
		vs.add("parse", "Dockerfile has no FROM")
		return vs
	}
	final := len(d.stages) - 1
	closure := d.closure(final)

	// Static, non-root, distroless final image.
	if base := d.stages[final].base; base != "gcr.io/distroless/static-debian12:nonroot" {
		vs.add("distroless-final", "final stage FROM %s, want gcr.io/distroless/static-debian12:nonroot", base)
	}
	if u := d.last(final, "USER"); u == nil {
		vs.add("non-root", "final stage has no USER (must not rely on the base image's default)")
	} else if user, _, _ := strings.Cut(strings.TrimSpace(u.args), ":"); user == "" || user == "root" || user == "0" {
		vs.add("non-root", "final stage runs as USER %s", u.args)
	}

	// The final image's stages build exactly one binary: ./cmd/mailslot,
	// pure Go, trimmed, with the build cache mounted.
	builds := 0
	for _, j := range closure {
		env := d.env(j)
		for _, in := range d.stages[j].instrs {
			lower := strings.ToLower(in.args)
			if strings.Contains(lower, "mailslotctl") || migrateRe.MatchString(lower) {
				vs.add("no-migration-tool", "stage %d line %d: %s %s puts the migration tool in the production image", j, in.line, in.cmd, in.args)
			}
			if in.cmd != "RUN" || !goBuildRe.MatchString(in.args) {
				continue
			}
			builds++
			pkgs := goBuildPackages(in.args)
			if !slices.Equal(pkgs, []string{"./cmd/mailslot"}) {
				vs.add("builds-only-mailslot", "line %d: go build of %v, want only ./cmd/mailslot", in.line, pkgs)
			}
			cgo := env["CGO_ENABLED"]
			if m := cgoRe.FindStringSubmatch(in.args); m != nil {
				cgo = m[1] // set on the command line, it wins over ENV
			}
			if cgo != "0" {
				vs.add("cgo-disabled", "line %d: go build with CGO_ENABLED=%q, want 0 (pure Go, static)", in.line, cgo)
			}
			if !strings.Contains(in.args, "-trimpath") {
				vs.add("builds-only-mailslot", "line %d: go build without -trimpath", in.line)
			}
			if !strings.Contains(in.args, "--mount=type=cache") {
				vs.add("build-cache", "line %d: go build without a BuildKit cache mount", in.line)
			}
		}
	}
	if builds != 1 {
		vs.add("builds-only-mailslot", "the final image's stages run %d go builds, want exactly 1 (./cmd/mailslot)", builds)
	}
	env := d.env(final)
	if env["MAILSLOT_DATA_DIR"] != dataDir {
		vs.add("data-dir", "final ENV MAILSLOT_DATA_DIR = %q, want %q", env["MAILSLOT_DATA_DIR"], dataDir)
	}

	// GOMEMLIMIT: the Go counterpart of --max-old-space-size on 256 MB, sized
	// so that the whole process stays within edgeRSSBudget.
	if s, ok := env["GOMEMLIMIT"]; !ok {
		vs.add("gomemlimit", "final stage sets no GOMEMLIMIT")
	} else if n, err := parseGoMemLimit(s); err != nil {
		vs.add("gomemlimit", "%v", err)
	} else if n > edgeRSSBudget-outsideGoLimit || n < minGoMemLimit {
		vs.add("gomemlimit", "GOMEMLIMIT=%s, want %d to %d MiB: the edge's %d MiB budget less ~%d MiB outside the Go runtime",
			s, minGoMemLimit/mib, (edgeRSSBudget-outsideGoLimit)/mib, edgeRSSBudget/mib, outsideGoLimit/mib)
	}

	// Runs the edge, never a migration; checks itself; listens on 8080.
	ep := d.last(final, "ENTRYPOINT")
	cmd := d.last(final, "CMD")
	if ep == nil {
		vs.add("entrypoint", "final stage has no ENTRYPOINT")
	} else if args, ok := execForm(ep.args); !ok || !slices.Equal(args, []string{"/mailslot"}) {
		vs.add("entrypoint", "ENTRYPOINT %s, want [\"/mailslot\"]", ep.args)
	}
	if cmd == nil {
		vs.add("entrypoint", "final stage has no CMD")
	} else if args, ok := execForm(cmd.args); !ok || !slices.Equal(args, []string{"serve"}) {
		vs.add("entrypoint", "CMD %s, want [\"serve\"]", cmd.args)
	}
	for _, in := range []*instruction{ep, cmd} {
		if in != nil && (strings.Contains(in.args, "migrat") || strings.Contains(in.args, "mailslotctl")) {
			vs.add("no-migration-tool", "%s %s runs a migration", in.cmd, in.args)
		}
	}
	if hc := d.last(final, "HEALTHCHECK"); hc == nil || strings.EqualFold(strings.TrimSpace(hc.args), "NONE") {
		vs.add("healthcheck", "final stage has no HEALTHCHECK")
	} else if i := strings.Index(hc.args, "CMD"); i < 0 {
		vs.add("healthcheck", "HEALTHCHECK %s has no CMD", hc.args)
	} else if args, ok := execForm(strings.TrimSpace(hc.args[i+3:])); !ok || len(args) == 0 || args[0] != "/mailslot" {
		vs.add("healthcheck", "HEALTHCHECK must run the binary in exec form (distroless has no shell): %s", hc.args)
	}
	if ex := d.last(final, "EXPOSE"); ex == nil || !slices.Contains(strings.Fields(ex.args), strconv.Itoa(publicPort)) {
		vs.add("expose", "final stage does not EXPOSE %d", publicPort)
	}
	return vs
}

// goBuildPackages returns the package arguments of the go build in a RUN line.
func goBuildPackages(run string) []string {
	loc := goBuildRe.FindStringIndex(run)
	if loc == nil {
		return nil
	}
	rest := run[loc[1]:]
	if i := strings.IndexAny(rest, ";&|"); i >= 0 {
		rest = rest[:i]
	}
	words := envWords(rest)
	var pkgs []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") {
			if !strings.Contains(w, "=") && slices.Contains([]string{"-o", "-ldflags", "-tags", "-gcflags", "-asmflags", "-mod", "-p", "-pkgdir", "-buildmode", "-modfile", "-overlay", "-pgo"}, w) {
				i++ // flag value
			}
			continue
		}
		pkgs = append(pkgs, w)
	}
	return pkgs
}

// ---------------------------------------------------------------------------
// deploy/oci/compose.yaml

func service(doc map[string]any, name string) map[string]any {
	return mapOf(mapOf(doc["services"])[name])
}

// serviceEnv reads environment: as a map or as a list of K=V.
func serviceEnv(svc map[string]any) map[string]string {
	out := map[string]string{}
	switch e := svc["environment"].(type) {
	case map[string]any:
		for k, v := range e {
			out[k] = asString(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(asString(kv), "=")
			out[k] = v
		}
	}
	return out
}

// commandText joins a command given as a string or a list.
func commandText(v any) string {
	switch c := v.(type) {
	case string:
		return c
	case []any:
		var parts []string
		for _, p := range c {
			parts = append(parts, asString(p))
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// volumeTargets maps each volume target of a service to its source.
func volumeTargets(svc map[string]any) map[string]string {
	out := map[string]string{}
	vols, _ := svc["volumes"].([]any)
	for _, v := range vols {
		switch x := v.(type) {
		case string:
			parts := strings.Split(x, ":")
			if len(parts) >= 2 {
				out[parts[1]] = parts[0]
			}
		case map[string]any:
			out[asString(x["target"])] = asString(x["source"])
		}
	}
	return out
}

var pg18Re = regexp.MustCompile(`^postgres:18([.-]|$)`)

func checkCompose(src, dockerfileSrc string) violations {
	var vs violations
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		vs.add("parse", "compose.yaml: %v", err)
		return vs
	}
	declared := mapOf(doc["volumes"])

	// Postgres 18 sized for the 1 GB VM (seed: shared_buffers=128MB,
	// effective_cache_size=256MB), on a persistent volume, with a healthcheck.
	pg := service(doc, "postgres")
	if pg == nil {
		vs.add("pg-memory", "no postgres service")
		return vs
	}
	cmd := commandText(pg["command"])
	for _, want := range []string{"shared_buffers=128MB", "effective_cache_size=256MB"} {
		if !regexp.MustCompile(`(^|\s)-c\s+` + regexp.QuoteMeta(want) + `(\s|$)`).MatchString(cmd) {
			vs.add("pg-memory", "postgres command %q lacks -c %s", cmd, want)
		}
	}
	if img := asString(pg["image"]); !pg18Re.MatchString(img) {
		vs.add("pg18", "postgres image %q, want postgres:18", img)
	}
	if src, ok := volumeTargets(pg)["/var/lib/postgresql"]; !ok {
		vs.add("pg-volume", "postgres has no volume at /var/lib/postgresql (PostgreSQL 18 images keep PGDATA under it; /var/lib/postgresql/data is refused)")
	} else if _, ok := declared[src]; !ok {
		vs.add("pg-volume", "postgres volume %q is not a declared named volume", src)
	}
	if hc := mapOf(pg["healthcheck"]); hc == nil || hc["test"] == nil {
		vs.add("pg-healthcheck", "postgres has no healthcheck")
	}

	// The edge: GOMEMLIMIT under its container limit, outbox on a volume,
	// started after Postgres is healthy, private port on loopback only.
	ms := service(doc, "mailslot")
	if ms == nil {
		vs.add("mailslot-gomemlimit", "no mailslot service")
		return vs
	}
	env := serviceEnv(ms)
	limit, limitErr := parseBytes(asString(ms["mem_limit"]))
	if limitErr != nil {
		vs.add("mailslot-gomemlimit", "mailslot mem_limit: %v", limitErr)
	}
	if s, ok := env["GOMEMLIMIT"]; !ok {
		vs.add("mailslot-gomemlimit", "mailslot sets no GOMEMLIMIT")
	} else if n, err := parseGoMemLimit(s); err != nil {
		vs.add("mailslot-gomemlimit", "mailslot %v", err)
	} else if limitErr == nil && (n >= limit || n > 768*mib) {
		vs.add("mailslot-gomemlimit", "mailslot GOMEMLIMIT=%s must be below its mem_limit %s and leave the 1 GB VM room for Postgres", s, asString(ms["mem_limit"]))
	}
	dir := env["MAILSLOT_DATA_DIR"]
	if dir == "" {
		dir = dataDir
	}
	if src, ok := volumeTargets(ms)[dir]; !ok {
		vs.add("mailslot-data-volume", "mailslot has no volume at MAILSLOT_DATA_DIR %s", dir)
	} else if _, ok := declared[src]; !ok {
		vs.add("mailslot-data-volume", "mailslot volume %q at %s is not a declared named volume", src, dir)
	}
	dep := mapOf(mapOf(ms["depends_on"])["postgres"])
	if asString(dep["condition"]) != "service_healthy" {
		vs.add("mailslot-depends-on", "mailslot does not depend on postgres with condition service_healthy")
	}
	if b := mapOf(ms["build"]); b != nil && asString(b["target"]) != "" {
		vs.add("migrate-separate-target", "mailslot builds target %q, want the Dockerfile's default (final) stage", asString(b["target"]))
	}
	for name, svc := range mapOf(doc["services"]) {
		ports, _ := mapOf(svc)["ports"].([]any)
		for _, p := range ports {
			spec := asString(p)
			if m := mapOf(p); m != nil {
				spec = asString(m["host_ip"]) + ":" + asString(m["published"]) + ":" + asString(m["target"])
			}
			parts := strings.Split(spec, ":")
			if parts[len(parts)-1] == strconv.Itoa(privatePort) && (len(parts) < 3 || parts[0] != "127.0.0.1") {
				vs.add("private-port-loopback", "service %s publishes %q: the private listener may be published on 127.0.0.1 only", name, spec)
			}
		}
	}

	// Migrations: a one-shot tools-profile service built from a separate,
	// non-default Dockerfile target.
	mg := service(doc, "migrate")
	if mg == nil {
		vs.add("migrate-separate-target", "no migrate service")
		return vs
	}
	if profiles, _ := mg["profiles"].([]any); !slices.ContainsFunc(profiles, func(p any) bool { return asString(p) == "tools" }) {
		vs.add("migrate-separate-target", "migrate is not in the tools profile (it would start with the stack)")
	}
	target := asString(mapOf(mg["build"])["target"])
	d, err := parseDockerfile(dockerfileSrc)
	switch {
	case err != nil:
		vs.add("parse", "Dockerfile: %v", err)
	case target == "":
		vs.add("migrate-separate-target", "migrate has no build target (it would build the production image)")
	default:
		idx := d.stageRef(target, len(d.stages))
		if idx < 0 {
			vs.add("migrate-separate-target", "migrate's build target %q is not a Dockerfile stage", target)
		} else if idx == len(d.stages)-1 {
			vs.add("migrate-separate-target", "migrate's build target %q is the production (final) stage", target)
		}
	}
	return vs
}

// ---------------------------------------------------------------------------
// deploy/deploy.mk

type makeTarget struct {
	name    string
	prereqs []string
	desc    string
	recipe  []string
}

var makeDirectiveRe = regexp.MustCompile(`^(ifeq|ifneq|ifdef|ifndef|else|endif)\b`)

// parseMakeTargets reads explicit rules (target: prereqs ## description) and
// their tab-indented recipes; variable assignments and directives are skipped.
func parseMakeTargets(src string) map[string]*makeTarget {
	out := map[string]*makeTarget{}
	var cur *makeTarget
	joining := false // the last recipe line ended in a backslash
	for _, line := range strings.Split(src, "\n") {
		if strings.HasPrefix(line, "\t") || joining {
			if cur == nil {
				continue
			}
			text := strings.TrimSpace(line)
			if joining {
				cur.recipe[len(cur.recipe)-1] += " " + strings.TrimSuffix(text, `\`)
			} else {
				cur.recipe = append(cur.recipe, strings.TrimSuffix(text, `\`))
			}
			joining = strings.HasSuffix(text, `\`)
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || makeDirectiveRe.MatchString(trimmed) {
			continue
		}
		colon := strings.Index(line, ":")
		eq := strings.Index(line, "=")
		if colon <= 0 || (eq >= 0 && eq < colon) || strings.HasPrefix(line[colon:], ":=") || strings.HasPrefix(line, "define ") {
			cur = nil
			continue
		}
		head, desc, _ := strings.Cut(line[colon+1:], "##")
		t := &makeTarget{name: strings.TrimSpace(line[:colon]), prereqs: strings.Fields(head), desc: strings.TrimSpace(desc)}
		if strings.HasPrefix(t.name, ".") {
			cur = nil
			continue
		}
		out[t.name] = t
		cur = t
	}
	return out
}

// flyRequire is the target every flyctl target depends on.
const flyRequire = "fly-require"

var requiredTargets = []string{
	"fly-launch", "fly-deploy", "fly-deploy-only", "fly-secrets", "fly-logs",
	"fly-ssh", "fly-pg-attach", "ci", "pg-backup", "pg-restore-check",
}

// flyctlCallRe matches $(FLY) where a command starts (not inside a message).
// printsEnvFileRe matches a command that would print the secrets file.
var printsEnvFileRe = regexp.MustCompile(`\b(cat|head|tail|less)\b[^|<]*\$\(ENV_PRODUCTION\)`)

var flyctlCallRe = regexp.MustCompile(`(^|[;&|({]|^@)\s*\$\(FLY\)\s+[a-z]`)

func checkDeployMK(src string) violations {
	var vs violations
	ts := parseMakeTargets(src)
	for _, name := range requiredTargets {
		t, ok := ts[name]
		if !ok {
			vs.add("targets-exist", "deploy.mk has no %s target", name)
			continue
		}
		if t.desc == "" {
			vs.add("targets-exist", "%s has no `## description` for make help", name)
		}
	}

	// The guard: flyctl must exist and be logged in.
	guard := ts[flyRequire].recipeOrNil()
	runs := func(re string) bool {
		return slices.ContainsFunc(guard, regexp.MustCompile(`^[@+-]*\s*`+re).MatchString)
	}
	if !runs(`command -v \$\(FLY\)\s`) || !runs(`\$\(FLY\) auth whoami\s`) {
		vs.add("fly-require", "%s must check `command -v $(FLY)` and `$(FLY) auth whoami`", flyRequire)
	}
	for _, t := range ts {
		if t.name == flyRequire {
			continue
		}
		if slices.ContainsFunc(t.recipe, flyctlCallRe.MatchString) && !slices.Contains(t.prereqs, flyRequire) {
			vs.add("fly-require", "%s runs flyctl but does not depend on %s", t.name, flyRequire)
		}
	}

	// fly-deploy: gates first, then deploy, then health.
	if t := ts["fly-deploy"]; t != nil {
		if !slices.Contains(t.prereqs, "check") || !slices.Contains(t.prereqs, "test") {
			vs.add("fly-deploy-gates", "fly-deploy does not depend on check and test (prereqs %v)", t.prereqs)
		}
		r := strings.Join(t.recipe, "\n")
		verify := strings.Join(ts["fly-verify"].recipeOrNil(), "\n")
		if !strings.Contains(r, "$(FLY) deploy") || !(strings.Contains(r, "/readyz") || strings.Contains(r, "fly-verify") && strings.Contains(verify, "/readyz")) {
			vs.add("fly-deploy-gates", "fly-deploy must run `$(FLY) deploy` and then verify /readyz")
		}
	}

	// fly-secrets: staged import from a file that must exist, never echoed.
	if t := ts["fly-secrets"]; t != nil {
		r := strings.Join(t.recipe, "\n")
		if !strings.Contains(r, "secrets import --stage") || !strings.Contains(r, "< '$(ENV_PRODUCTION)'") || !strings.Contains(r, "test -f") {
			vs.add("fly-secrets", "fly-secrets must refuse a missing $(ENV_PRODUCTION) and `secrets import --stage` from it")
		}
		for _, l := range t.recipe {
			if !strings.HasPrefix(l, "@") {
				vs.add("fly-secrets", "fly-secrets recipe line %q is echoed (prefix it with @)", l)
			}
			if printsEnvFileRe.MatchString(l) {
				vs.add("fly-secrets", "fly-secrets prints %s: %q", "$(ENV_PRODUCTION)", l)
			}
		}
	}

	// ci and the backup targets never echo DATABASE_URL, and ci migrates
	// only after the gates.
	for _, name := range []string{"ci", "pg-backup", "pg-restore-check"} {
		for _, l := range ts[name].recipeOrNil() {
			if strings.Contains(l, "$(DATABASE_URL)") && !strings.HasPrefix(l, "@") {
				vs.add("no-secret-echo", "%s echoes DATABASE_URL: %q", name, l)
			}
		}
	}
	if t := ts["ci"]; t != nil {
		gates, migrate := -1, -1
		for i, l := range t.recipe {
			if strings.Contains(l, "$(MAKE)") && strings.Contains(l, "check test") {
				gates = i
			}
			if strings.Contains(l, "$(MAILSLOTCTL) migrate") && strings.Contains(l, "DATABASE_URL") {
				migrate = i
			}
		}
		if gates < 0 || migrate < gates {
			vs.add("ci", "ci must run `$(MAKE) ... check test`, then `$(MAILSLOTCTL) migrate` with DATABASE_URL")
		}
	}
	if t := ts["pg-backup"]; t != nil && !strings.Contains(strings.Join(t.recipe, "\n"), "scripts/pg-backup.sh") {
		vs.add("pg-scripts", "pg-backup does not run scripts/pg-backup.sh")
	}
	if t := ts["pg-restore-check"]; t != nil && !strings.Contains(strings.Join(t.recipe, "\n"), "scripts/pg-restore-check.sh") {
		vs.add("pg-scripts", "pg-restore-check does not run scripts/pg-restore-check.sh")
	}
	return vs
}

func (t *makeTarget) recipeOrNil() []string {
	if t == nil {
		return nil
	}
	return t.recipe
}

// ---------------------------------------------------------------------------
// .github/workflows/pg-backup.yml

func checkWorkflow(src string) violations {
	var vs violations
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		vs.add("parse", "pg-backup.yml: %v", err)
		return vs
	}
	on := mapOf(doc["on"])
	sched, _ := on["schedule"].([]any)
	if len(sched) == 0 || asString(mapOf(sched[0])["cron"]) == "" {
		vs.add("schedule", "no schedule cron")
	}
	if _, ok := on["workflow_dispatch"]; !ok {
		vs.add("schedule", "no workflow_dispatch")
	}
	var uses, runs []string
	var artifact map[string]any
	for _, job := range mapOf(doc["jobs"]) {
		steps, _ := mapOf(job)["steps"].([]any)
		for _, s := range steps {
			step := mapOf(s)
			u := asString(step["uses"])
			uses = append(uses, u)
			runs = append(runs, asString(step["run"]))
			if strings.HasPrefix(u, "actions/upload-artifact@") {
				artifact = mapOf(step["with"])
			}
		}
	}
	if !slices.ContainsFunc(uses, func(u string) bool { return strings.HasPrefix(u, "superfly/flyctl-actions/setup-flyctl@") }) {
		vs.add("flyctl", "flyctl is not installed with superfly/flyctl-actions/setup-flyctl")
	}
	all := strings.Join(runs, "\n")
	if !strings.Contains(all, "flyctl proxy") || !strings.Contains(all, "make pg-backup") {
		vs.add("backup", "the job must open `flyctl proxy` and run `make pg-backup`")
	}
	if artifact == nil {
		vs.add("artifact", "no actions/upload-artifact step")
		return vs
	}
	if n, ok := asInt(artifact["retention-days"]); !ok || n < 1 || n > 90 {
		vs.add("artifact", "retention-days = %v, want 1..90", artifact["retention-days"])
	}
	// Dumps hold personal data: only encrypted dumps leave the runner.
	for _, p := range strings.Split(strings.TrimSpace(asString(artifact["path"])), "\n") {
		p = strings.TrimSpace(p)
		if !strings.HasSuffix(p, ".age") && !strings.HasSuffix(p, ".counts") {
			vs.add("encrypted-artifact", "artifact path %q could upload a plaintext dump", p)
		}
	}
	return vs
}

// ---------------------------------------------------------------------------
// Tests on the repository's files.

func wantNoViolations(t *testing.T, vs violations) {
	t.Helper()
	for _, v := range vs {
		t.Errorf("%s", v)
	}
}

func TestRepositoryFlyTOML(t *testing.T) {
	wantNoViolations(t, checkFlyTOML(readFile(t, flyTOMLPath)))
}

func TestRepositoryDockerfile(t *testing.T) {
	wantNoViolations(t, checkDockerfile(readFile(t, dockerfilePath)))
}

func TestRepositoryCompose(t *testing.T) {
	wantNoViolations(t, checkCompose(readFile(t, composePath), readFile(t, dockerfilePath)))
}

func TestRepositoryDeployMK(t *testing.T) {
	wantNoViolations(t, checkDeployMK(readFile(t, deployMKPath)))
}

func TestRepositoryWorkflow(t *testing.T) {
	wantNoViolations(t, checkWorkflow(readFile(t, workflowPath)))
}

// The Fly data dir, the image's and compose's must be the same directory.
func TestDataDirAgrees(t *testing.T) {
	var fly map[string]any
	if err := toml.Unmarshal([]byte(readFile(t, flyTOMLPath)), &fly); err != nil {
		t.Fatal(err)
	}
	d, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	var compose map[string]any
	if err := yaml.Unmarshal([]byte(readFile(t, composePath)), &compose); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"fly.toml [env]":    asString(mapOf(fly["env"])["MAILSLOT_DATA_DIR"]),
		"Dockerfile ENV":    d.env(len(d.stages) - 1)["MAILSLOT_DATA_DIR"],
		"compose mailslot":  serviceEnv(service(compose, "mailslot"))["MAILSLOT_DATA_DIR"],
		"fly.toml [mounts]": asString(tables(fly, "mounts")[0]["destination"]),
	}
	for where, dir := range got {
		if dir != dataDir {
			t.Errorf("%s: data dir %q, want %q", where, dir, dataDir)
		}
	}
}

func TestDockerignoreKeepsSecretsOut(t *testing.T) {
	lines := strings.Split(readFile(t, dockerignorePath), "\n")
	for _, want := range []string{".env", ".env.*", ".git/", "backups/", "*.dump"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %q", want)
		}
	}
}

func TestBackupScriptsAreExecutable(t *testing.T) {
	for _, p := range []string{backupScript, restoreScript} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", p)
		}
		if !strings.HasPrefix(readFile(t, p), "#!/usr/bin/env bash\n") {
			t.Errorf("%s does not start with #!/usr/bin/env bash", p)
		}
	}
}

// ---------------------------------------------------------------------------
// The checkers catch what they name: break one rule in a copy of the real
// file and that rule, only, must be reported.

type mutation struct {
	rule     string   // the rule that must be reported
	old, new string   // replace old (must occur in the file) with new
	all      bool     // replace every occurrence, not only the first
	also     []string // other rules the same change rightly breaks
}

func mut(rule, old, new string) mutation { return mutation{rule: rule, old: old, new: new} }

func runMutations(t *testing.T, path string, check func(string) violations, muts []mutation) {
	t.Helper()
	src := readFile(t, path)
	if vs := check(src); len(vs) != 0 {
		t.Fatalf("%s has violations before any mutation: %v", path, vs)
	}
	for _, m := range muts {
		name := m.rule + "/" + strings.Join(strings.Fields(m.new), " ")
		if len(name) > 80 {
			name = name[:80]
		}
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(src, m.old) {
				t.Fatalf("mutation is stale: %q is not in %s; update it to the file", m.old, path)
			}
			n := 1
			if m.all {
				n = -1
			}
			got := check(strings.Replace(src, m.old, m.new, n)).rules()
			if !slices.Contains(got, m.rule) {
				t.Errorf("replacing %q with %q: rule %s not reported (got %v)", m.old, m.new, m.rule, got)
			}
			for _, r := range got {
				if r != m.rule && r != "parse" && !slices.Contains(m.also, r) {
					t.Errorf("replacing %q with %q also broke rule %s", m.old, m.new, r)
				}
			}
		})
	}
}

func TestCheckersCatchFlyTOML(t *testing.T) {
	runMutations(t, flyTOMLPath, checkFlyTOML, []mutation{
		mut("vm-memory-256mb", `memory = "256mb"`, `memory = "512mb"`),
		mut("vm-memory-256mb", `memory = "256mb"`, `memory_mb = 256`),
		mut("no-release-command", "[deploy]\n", "[deploy]\n  release_command = \"/mailslotctl migrate\"\n"),
		mut("no-release-command", "[build]\n", "[processes]\n  app = \"/mailslot serve\"\n  migrate = \"/mailslotctl migrate\"\n\n[build]\n"),
		mut("mount-data-dir", `destination = "/data"`, `destination = "/var/lib/mailslot"`),
		mut("health-checks", `path = "/readyz"`, `path = "/ready"`),
		mut("health-checks", `path = "/healthz"`, `path = "/"`),
		mut("health-checks", "    interval = \"10s\"\n    timeout = \"2s\"", "    interval = \"10s\"\n    timeout = \"10s\""),
		mut("metrics-private-port", "[metrics]\n  port = 9090", "[metrics]\n  port = 9091"),
		mut("metrics-private-port", `MAILSLOT_PRIVATE_ADDR = "[::]:9090"`, `MAILSLOT_PRIVATE_ADDR = "127.0.0.1:9191"`),
		mut("private-port-not-exposed", "[metrics]\n", "[[services]]\n  internal_port = 9090\n  protocol = \"tcp\"\n\n[metrics]\n"),
		mut("auto-stop-off", `auto_stop_machines = "off"`, `auto_stop_machines = "suspend"`),
		mut("auto-stop-off", `auto_stop_machines = "off"`, `auto_stop_machines = true`),
		mut("no-secrets-in-env", `MAILSLOT_ENV = "production"`, "MAILSLOT_ENV = \"production\"\n  MAILSLOT_ADMIN_TOKEN = \"hunter2\""),
		mut("gomemlimit-below-vm", `GOMEMLIMIT = "80MiB"`, `GOMEMLIMIT = "300MiB"`),
		mut("gomemlimit-below-vm", `GOMEMLIMIT = "80MiB"`, `GOMEMLIMIT = "200MiB"`),
		mut("gomemlimit-below-vm", `GOMEMLIMIT = "80MiB"`, `GOMEMLIMIT = "32MiB"`),
		mut("gomemlimit-below-vm", `GOMEMLIMIT = "80MiB"`, `GOMEMLIMIT = "80MB"`),
		mut("soft-stop", `kill_timeout = "30s"`, `kill_timeout = "2s"`),
		mut("soft-stop", `kill_signal = "SIGTERM"`, `kill_signal = "SIGKILL"`),
	})
}

func TestCheckersCatchDockerfile(t *testing.T) {
	runMutations(t, dockerfilePath, checkDockerfile, []mutation{
		mut("builds-only-mailslot", "-o /out/mailslot ./cmd/mailslot", "-o /out/ ./cmd/..."),
		mut("builds-only-mailslot", "-o /out/mailslot ./cmd/mailslot", "-o /out/mailslot ./cmd/mailslot ./cmd/mailslotd"),
		{rule: "no-migration-tool", old: "COPY --from=build-mailslot /out/mailslot /mailslot", new: "COPY --from=build-mailslot /out/mailslot /mailslot\nCOPY --from=build-mailslotctl /out/mailslotctl /mailslotctl", also: []string{"builds-only-mailslot"}},
		{rule: "no-migration-tool", old: `CMD ["serve"]`, new: `CMD ["migrate"]`, also: []string{"entrypoint"}},
		mut("no-migration-tool", "RUN mkdir -p /out/data", "RUN mkdir -p /out/data && go install github.com/golang-migrate/migrate/v4/cmd/migrate@latest"),
		{rule: "cgo-disabled", old: "CGO_ENABLED=0 GOOS=$TARGETOS", new: "CGO_ENABLED=1 GOOS=$TARGETOS"},
		{rule: "cgo-disabled", old: "CGO_ENABLED=0", new: "CGO_ENABLED=1", all: true},
		mut("gomemlimit", "GOMEMLIMIT=80MiB", "GOMEMLIMIT=256MiB"),
		mut("gomemlimit", "GOMEMLIMIT=80MiB", "GOMEMLIMIT=200MiB"),
		mut("gomemlimit", "GOMEMLIMIT=80MiB", "GOMEMLIMIT=32MiB"),
		mut("gomemlimit", "GOMEMLIMIT=80MiB", "GOMEMLIMIT=80MB"),
		mut("gomemlimit", "    MAILSLOT_DATA_DIR=/data \\\n    GOMEMLIMIT=80MiB", "    MAILSLOT_DATA_DIR=/data"),
		mut("non-root", "USER 65532:65532\nEXPOSE", "USER root\nEXPOSE"),
		mut("non-root", "USER 65532:65532\nEXPOSE", "EXPOSE"),
		mut("healthcheck", "HEALTHCHECK --interval", "HEALTHCHECK NONE\n# --interval"),
		mut("healthcheck", `CMD ["/mailslot", "healthcheck"]`, `CMD curl -f http://localhost:8080/healthz`),
		mut("entrypoint", `ENTRYPOINT ["/mailslot"]`, `ENTRYPOINT /mailslot`),
		mut("distroless-final", "FROM gcr.io/distroless/static-debian12:nonroot\nARG VERSION", "FROM debian:12-slim\nARG VERSION"),
		mut("build-cache", "RUN --mount=type=cache,target=/go/pkg/mod \\\n    --mount=type=cache,target=/root/.cache/go-build \\\n    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \\\n    go build -trimpath -buildvcs=false \\\n      -ldflags \"-s -w -X main.version=${VERSION}\" \\\n      -o /out/mailslot", "RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \\\n    go build -trimpath -buildvcs=false \\\n      -ldflags \"-s -w -X main.version=${VERSION}\" \\\n      -o /out/mailslot"),
		mut("expose", "EXPOSE 8080", "EXPOSE 9090"),
	})
}

func TestCheckersCatchCompose(t *testing.T) {
	df := readFile(t, dockerfilePath)
	check := func(src string) violations { return checkCompose(src, df) }
	runMutations(t, composePath, check, []mutation{
		mut("pg-memory", "-c shared_buffers=128MB", "-c shared_buffers=512MB"),
		mut("pg-memory", "-c effective_cache_size=256MB", "-c effective_cache_size=768MB"),
		mut("pg18", "image: postgres:18", "image: postgres:16"),
		mut("pg-volume", "- pgdata:/var/lib/postgresql\n", "- pgdata:/var/lib/postgresql/data\n"),
		mut("pg-healthcheck", "    healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready -U mailslot -d mailslot\"]\n", "    x-healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready -U mailslot -d mailslot\"]\n"),
		mut("mailslot-gomemlimit", "GOMEMLIMIT: 400MiB", "GOMEMLIMIT: 512MiB"),
		mut("mailslot-gomemlimit", "      GOMEMLIMIT: 400MiB\n", ""),
		mut("mailslot-data-volume", "- mailslot-data:/data", "- mailslot-data:/srv"),
		mut("mailslot-depends-on", "condition: service_healthy\n    mem_limit: 480m", "condition: service_started\n    mem_limit: 480m"),
		mut("private-port-loopback", `"127.0.0.1:9090:9090"`, `"9090:9090"`),
		mut("migrate-separate-target", "      target: mailslotctl\n", ""),
		mut("migrate-separate-target", `profiles: ["tools"]`, `profiles: ["default-off"]`),
	})
}

func TestCheckersCatchDeployMK(t *testing.T) {
	runMutations(t, deployMKPath, checkDeployMK, []mutation{
		mut("targets-exist", "fly-pg-attach: fly-require ##", "fly-postgres-attach: fly-require ##"),
		mut("targets-exist", "pg-restore-check: ## restore", "pg-restore-check: # restore"),
		mut("fly-require", "fly-logs: fly-require ##", "fly-logs: ##"),
		mut("fly-require", "\t@$(FLY) auth whoami >/dev/null 2>&1 || { \\", "\t@true || { \\"),
		mut("fly-deploy-gates", "fly-deploy: check test fly-require ##", "fly-deploy: fly-require ##"),
		mut("fly-secrets", "secrets import --stage", "secrets import"),
		mut("fly-secrets", "\t@test -f '$(ENV_PRODUCTION)' || { \\", "\t@cat '$(ENV_PRODUCTION)'; test -f '$(ENV_PRODUCTION)' || { \\"),
		mut("no-secret-echo", "\t@DATABASE_URL='$(DATABASE_URL)' BACKUP_DIR='$(BACKUP_DIR)' BACKUP_KEEP_DAYS", "\tDATABASE_URL='$(DATABASE_URL)' BACKUP_DIR='$(BACKUP_DIR)' BACKUP_KEEP_DAYS"),
		mut("pg-scripts", "bash scripts/pg-backup.sh", "pg_dump -Fc"),
	})
}

func TestCheckersCatchWorkflow(t *testing.T) {
	runMutations(t, workflowPath, checkWorkflow, []mutation{
		mut("encrypted-artifact", "${{ env.BACKUP_DIR }}/*.dump.age", "${{ env.BACKUP_DIR }}/*.dump"),
		mut("artifact", "retention-days: 14", "retention-days: 400"),
		mut("flyctl", "superfly/flyctl-actions/setup-flyctl@master", "some/other-action@v1"),
		mut("schedule", "  workflow_dispatch:\n", ""),
	})
}

// ---------------------------------------------------------------------------
// deploy.mk, run: the flyctl targets refuse without flyctl or a login and
// never reach a flyctl command; ci refuses without DATABASE_URL and keeps it
// away from the gates. Uses make and /bin/sh; skipped where make is missing.

type makeRun struct {
	code           int
	stdout, stderr string
	flyCalls       []string
}

type makeHarness struct {
	t   *testing.T
	dir string
	bin string // the only directory on PATH
	log string // fake flyctl's call log
}

// shells are the recipe shells deploy.mk must work under: make's default,
// and the top-level Makefile's (SHELL := bash, .SHELLFLAGS := -eu -o pipefail -c).
var shells = []struct{ name, header string }{
	{"sh", ""},
	{"bash-strict", "SHELL := bash\n.SHELLFLAGS := -eu -o pipefail -c\n"},
}

func newMakeHarness(t *testing.T, shellHeader string) *makeHarness {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	mk, err := filepath.Abs(deployMKPath)
	if err != nil {
		t.Fatal(err)
	}
	h := &makeHarness{t: t, dir: t.TempDir()}
	h.bin = filepath.Join(h.dir, "bin")
	h.log = filepath.Join(h.dir, "flyctl.log")
	if err := os.Mkdir(h.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// PATH is this directory only, so a flyctl installed on the machine is
	// never found; the tools the recipes use are linked in.
	for _, tool := range []string{"bash", "awk", "cat", "env", "git", "sed", "grep", "sleep", "curl"} {
		if p, err := exec.LookPath(tool); err == nil {
			if err := os.Symlink(p, filepath.Join(h.bin, tool)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Stub gates that show whether DATABASE_URL reached them.
	makefile := shellHeader + "include " + mk + "\n" +
		"check: ; @echo \"CHECK db=[$${DATABASE_URL-}]\"\n" +
		"test: ; @echo \"TEST db=[$${DATABASE_URL-}]\"\n"
	h.write("Makefile", makefile, 0o644)
	h.write("bin/migrate-stub", "#!/bin/sh\necho \"MIGRATE $* db=[$DATABASE_URL]\"\n", 0o755)
	return h
}

func (h *makeHarness) write(rel, content string, mode os.FileMode) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, rel), []byte(content), mode); err != nil {
		h.t.Fatal(err)
	}
}

// fakeFlyctl installs, as bin/name, a flyctl that logs its arguments;
// `auth whoami` succeeds only when loggedIn. Any other fake is removed.
func (h *makeHarness) fakeFlyctl(name string, loggedIn bool) {
	for _, n := range []string{"flyctl", "fly"} {
		_ = os.Remove(filepath.Join(h.bin, n))
	}
	whoami := "echo 'not logged in' >&2; exit 1"
	if loggedIn {
		whoami = "echo ops@example.com; exit 0"
	}
	h.write("bin/"+name, "#!/bin/sh\n"+
		"echo \"$*\" >> '"+h.log+"'\n"+
		"if [ \"$1 $2\" = 'auth whoami' ]; then "+whoami+"; fi\n"+
		"cat >/dev/null\n", 0o755)
}

func (h *makeHarness) run(env []string, args ...string) makeRun {
	h.t.Helper()
	_ = os.Remove(h.log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	makePath, _ := exec.LookPath("make")
	cmd := exec.CommandContext(ctx, makePath, append([]string{"--no-print-directory", "-C", h.dir}, args...)...)
	cmd.Env = append([]string{"PATH=" + h.bin, "HOME=" + h.dir, "LC_ALL=C"}, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := makeRun{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		h.t.Fatalf("make %v: %v", args, err)
	}
	if b, err := os.ReadFile(h.log); err == nil {
		r.flyCalls = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	return r
}

var flyTargets = []string{
	"fly-launch", "fly-deploy", "fly-deploy-only", "fly-secrets", "fly-logs",
	"fly-ssh", "fly-status", "fly-regions", "fly-pg-attach",
}

func TestFlyTargetsRequireFlyctl(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh.name, func(t *testing.T) { testFlyTargetsRequireFlyctl(t, newMakeHarness(t, sh.header)) })
	}
}

func testFlyTargetsRequireFlyctl(t *testing.T, h *makeHarness) {
	for _, target := range flyTargets {
		t.Run("missing/"+target, func(t *testing.T) {
			r := h.run(nil, target)
			if r.code == 0 || !strings.Contains(r.stderr, "not found") || !strings.Contains(r.stderr, "flyctl") {
				t.Errorf("make %s without flyctl: exit %d, stderr %q; want a failure naming flyctl", target, r.code, r.stderr)
			}
		})
	}
	h.fakeFlyctl("flyctl", false)
	for _, target := range flyTargets {
		t.Run("logged-out/"+target, func(t *testing.T) {
			r := h.run(nil, target)
			if r.code == 0 || !strings.Contains(r.stderr, "auth whoami") {
				t.Errorf("make %s logged out: exit %d, stderr %q; want a failure naming auth whoami", target, r.code, r.stderr)
			}
			if !slices.Equal(r.flyCalls, []string{"auth whoami"}) {
				t.Errorf("make %s logged out ran flyctl %q; want only `auth whoami`", target, r.flyCalls)
			}
		})
	}
	// The guard passes when flyctl is there, as flyctl or as fly, and
	// logged in.
	for _, name := range []string{"flyctl", "fly"} {
		h.fakeFlyctl(name, true)
		r := h.run(nil, "fly-logs")
		if r.code != 0 || !slices.Equal(r.flyCalls, []string{"auth whoami", "logs --app mailslot"}) {
			t.Errorf("make fly-logs with %s logged in: exit %d, calls %q, stderr %q", name, r.code, r.flyCalls, r.stderr)
		}
	}
}

func TestFlySecretsRefusesBadFiles(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh.name, func(t *testing.T) { testFlySecretsRefusesBadFiles(t, newMakeHarness(t, sh.header)) })
	}
}

func testFlySecretsRefusesBadFiles(t *testing.T, h *makeHarness) {
	h.fakeFlyctl("flyctl", true)
	const secret = "s3cr3t-value-that-must-not-print"
	cases := []struct {
		name, file string // file "" means no .env.production
		ok         bool
	}{
		{"missing", "", false},
		{"database-url", "MAILSLOT_IP_PEPPER=" + secret + "\nDATABASE_URL=postgres://u:" + secret + "@h/db\n", false},
		{"export", "export MAILSLOT_IP_PEPPER=" + secret + "\n", false},
		{"bare-line", "MAILSLOT_IP_PEPPER=x\n" + secret + "\n", false},
		{"unclosed-multiline", "KEY=\"\"\"" + secret + "\n", false},
		{"good", "# production\nMAILSLOT_IP_PEPPER=" + secret + "\nMAILSLOT_ADMIN_TOKEN=\"" + secret + "\"\nPEM=\"\"\"-----BEGIN\n" + secret + "\n-----END\"\"\"\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_ = os.Remove(filepath.Join(h.dir, ".env.production"))
			if c.file != "" {
				h.write(".env.production", c.file, 0o600)
			}
			r := h.run(nil, "fly-secrets")
			imported := slices.ContainsFunc(r.flyCalls, func(s string) bool { return strings.HasPrefix(s, "secrets import --stage") })
			if c.ok && (r.code != 0 || !imported) {
				t.Errorf("exit %d, calls %q, stderr %q; want a staged import", r.code, r.flyCalls, r.stderr)
			}
			if !c.ok && (r.code == 0 || imported) {
				t.Errorf("exit %d, calls %q; want a refusal before any import", r.code, r.flyCalls)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("make fly-secrets printed a secret value:\n%s%s", r.stdout, r.stderr)
			}
		})
	}
}

func TestCIGuardsDatabaseURL(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh.name, func(t *testing.T) { testCIGuardsDatabaseURL(t, newMakeHarness(t, sh.header)) })
	}
}

func testCIGuardsDatabaseURL(t *testing.T, h *makeHarness) {
	stub := "MAILSLOTCTL=" + filepath.Join(h.bin, "migrate-stub")
	const prod = "postgres://ops:pw@127.0.0.1:15432/mailslot"

	r := h.run(nil, "ci", stub)
	if r.code == 0 || !strings.Contains(r.stderr, "DATABASE_URL is not set") {
		t.Errorf("make ci without DATABASE_URL: exit %d, stderr %q; want a refusal", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "CHECK") || strings.Contains(r.stdout, "MIGRATE") {
		t.Errorf("make ci without DATABASE_URL ran the gates or migrate:\n%s", r.stdout)
	}

	for _, how := range []string{"command-line", "environment"} {
		t.Run(how, func(t *testing.T) {
			var r makeRun
			if how == "environment" {
				r = h.run([]string{"DATABASE_URL=" + prod}, "ci", stub)
			} else {
				r = h.run(nil, "ci", stub, "DATABASE_URL="+prod)
			}
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			want := []string{"CHECK db=[]", "TEST db=[]", "MIGRATE migrate db=[" + prod + "]"}
			var got []string
			for _, l := range strings.Split(r.stdout, "\n") {
				if strings.HasPrefix(l, "CHECK") || strings.HasPrefix(l, "TEST") || strings.HasPrefix(l, "MIGRATE") {
					got = append(got, l)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("make ci ran %q, want %q (gates without DATABASE_URL, then migrate with it)", got, want)
			}
			if strings.Contains(r.stderr, "pw@") || strings.Count(r.stdout, "pw@") != 1 {
				t.Errorf("make ci echoed DATABASE_URL beyond the stub's own line:\n%s%s", r.stdout, r.stderr)
			}
		})
	}
}
