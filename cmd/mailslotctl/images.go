package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/sync/images"
)

const imagesUsage = `usage: mailslotctl images <command> [flags]

commands:
  list      the newest jobs (--state queued|running|failed|succeeded|dead|cancelled)
  status    queue depth, in flight, failed, dead and this month's spend; with an ID, one job
  submit    queue a job: --url https://… (an allowlisted host) or --file image.jpg; --lead ID
  retry     run failed, dead or cancelled jobs again with fresh attempts: retry ID...
  cancel    stop jobs (a running one's predictions are cancelled at the provider): cancel ID...

Jobs live in Postgres: every command takes --database-url (default $DATABASE_URL).
Limits and the budget come from the edge's variables when set:
MAILSLOT_IMAGE_ALLOWED_HOSTS, MAILSLOT_IMAGE_MAX_UPLOAD_BYTES,
MAILSLOT_IMAGE_UPLOAD_STORE_BYTES, MAILSLOT_IMAGE_MAX_ATTEMPTS,
MAILSLOT_IMAGE_MONTHLY_BUDGET, MAILSLOT_IMAGE_PROVIDER.
`

func runImages(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, imagesUsage)
		return errUsage
	}
	switch args[0] {
	case "list":
		return imagesList(ctx, e, args[1:])
	case "status":
		return imagesStatus(ctx, e, args[1:])
	case "submit":
		return imagesSubmit(ctx, e, args[1:])
	case "retry", "cancel":
		return imagesChange(ctx, e, args[0], args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, imagesUsage)
		return nil
	}
	fmt.Fprint(e.stderr, imagesUsage)
	return fmt.Errorf("%w: unknown images command %q", errUsage, args[0])
}

// imagesConn opens Postgres for an images command.
func imagesConn(ctx context.Context, e env, dbFlag string) (*pgx.Conn, error) {
	dbURL, err := databaseURL(e, dbFlag)
	if err != nil {
		return nil, err
	}
	return connect(ctx, dbURL)
}

func imagesList(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "images list", "images list [--state STATE] [--limit N] [--json] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	state := fs.String("state", "", "only jobs in this state")
	limit := fs.Int("limit", 50, "at most this many jobs, newest first (1-1000)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *state {
	case "", images.StateQueued, images.StateRunning, images.StateFailed, images.StateSucceeded, images.StateDead, images.StateCancelled:
	default:
		return fmt.Errorf("%w: --state %q is not a job state", errUsage, *state)
	}
	conn, err := imagesConn(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	jobs, err := images.NewStore(conn).List(ctx, *state, *limit)
	if err != nil {
		return imagesSchemaHint(err)
	}
	if *asJSON {
		return imagesJSON(e.stdout, jobs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tATTEMPTS\tSOURCE\tLEAD\tFACES\tCAPTION\tCOST\tLAST ERROR")
	for _, j := range jobs {
		faces, caption := "-", "-"
		if j.FaceCount != nil {
			faces = strconv.Itoa(*j.FaceCount)
		}
		if j.Caption != nil {
			caption = imageShorten(*j.Caption, 40)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d/%d\t%s\t%s\t%s\t%s\t$%.4f\t%s\n", j.ID, j.State, j.Attempts, j.MaxAttempts,
			j.Source, imageLead(j), faces, caption, j.CostUSD, orDash(imageShorten(j.LastError, 60)))
	}
	return tw.Flush()
}

func imagesStatus(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "images status", "images status [ID] [--json] [--budget USD] [--database-url URL]")
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	budget := fs.Float64("budget", cfg.Images.MonthlyBudget, "monthly budget in USD (default $MAILSLOT_IMAGE_MONTHLY_BUDGET, else 10)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("%w: images status takes at most one job ID", errUsage)
	}
	conn, err := imagesConn(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if fs.NArg() == 1 {
		id, err := imageJobID(fs.Arg(0))
		if err != nil {
			return err
		}
		j, err := images.NewStore(conn).Get(ctx, id)
		if err != nil {
			return imagesSchemaHint(err)
		}
		if *asJSON {
			return imagesJSON(e.stdout, j)
		}
		return printImageJob(e.stdout, j)
	}
	st, err := images.ReadStatus(ctx, conn, cfg.Images.Provider, *budget)
	if err != nil {
		return imagesSchemaHint(err)
	}
	if *asJSON {
		return imagesJSON(e.stdout, st)
	}
	return printImageStatus(e.stdout, st)
}

// printImageStatus is the summary `images status` prints.
func printImageStatus(w io.Writer, st images.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "provider\t%s\n", st.Provider)
	due := fmt.Sprintf("%d due now", st.Ready)
	if st.Ready > 0 {
		due += fmt.Sprintf(", the oldest for %s", (time.Duration(st.OldestReadyAgeSeconds * float64(time.Second))).Round(time.Second))
	}
	fmt.Fprintf(tw, "queue depth\t%d (%s)\n", st.QueueDepth, due)
	fmt.Fprintf(tw, "in flight\t%d\n", st.InFlight)
	fmt.Fprintf(tw, "failed\t%d (waiting to retry)\n", st.Failed)
	fmt.Fprintf(tw, "dead\t%d\n", st.Dead)
	fmt.Fprintf(tw, "succeeded\t%d\n", st.Succeeded)
	fmt.Fprintf(tw, "cancelled\t%d\n", st.Cancelled)
	fmt.Fprintf(tw, "uploads kept\t%d bytes\n", st.UploadBytes)
	budget := "no budget"
	if st.MonthlyBudgetUSD > 0 {
		budget = fmt.Sprintf("of a $%.2f budget", st.MonthlyBudgetUSD)
	}
	fmt.Fprintf(tw, "spend\t$%.4f this month (%.1f s of compute) %s\n", st.MonthToDateUSD, st.MonthToDateSeconds, budget)
	if st.Reason != "" {
		fmt.Fprintf(tw, "dispatching\tstopped: %s\n", st.Reason)
	}
	return tw.Flush()
}

// writeImageSummary prints one line about image jobs under the node table
// of mailslotctl status. A schema without the image tables, or a fleet that
// has never described an image, prints nothing.
func writeImageSummary(ctx context.Context, e env, cfg *config.Config, conn *pgx.Conn) error {
	st, err := images.ReadStatus(ctx, conn, cfg.Images.Provider, cfg.Images.MonthlyBudget)
	if err != nil {
		if errors.Is(imagesSchemaHint(err), errImagesSchema) {
			return nil
		}
		return err
	}
	// A fleet that has never described an image gets no line about it.
	if st.QueueDepth+st.InFlight+st.Failed+st.Dead+st.Succeeded+st.Cancelled == 0 && st.MonthToDateUSD == 0 {
		return nil
	}
	line := fmt.Sprintf("images: queue %d (%d due), in flight %d, failed %d, dead %d; $%.4f spent this month of $%.2f",
		st.QueueDepth, st.Ready, st.InFlight, st.Failed, st.Dead, st.MonthToDateUSD, st.MonthlyBudgetUSD)
	if st.BudgetExhausted {
		line += " (budget reached: dispatching stopped)"
	}
	fmt.Fprintln(e.stdout, line)
	return nil
}

func printImageJob(w io.Writer, j images.Job) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("id", strconv.FormatInt(j.ID, 10))
	row("state", j.State)
	row("attempts", fmt.Sprintf("%d of %d", j.Attempts, j.MaxAttempts))
	if j.State == images.StateQueued || j.State == images.StateFailed {
		row("runs after", j.RunAfter.Format(time.RFC3339))
	}
	row("lead", imageLead(j))
	if j.Source == "url" {
		row("image", j.ImageURL)
	} else {
		row("image", fmt.Sprintf("upload, %d bytes kept", j.UploadBytes))
	}
	row("provider", orDash(j.Provider))
	if j.FaceCount != nil {
		row("faces", strconv.Itoa(*j.FaceCount))
	}
	if j.Caption != nil {
		row("caption", *j.Caption)
	}
	row("compute", fmt.Sprintf("%.2f s, $%.6f", j.PredictSeconds, j.CostUSD))
	row("last error", orDash(j.LastError))
	row("submitted", j.CreatedAt.Format(time.RFC3339)+" by "+j.SubmittedBy)
	if j.FinishedAt != nil {
		row("finished", j.FinishedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func imagesSubmit(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "images submit", "images submit (--url URL | --file PATH) [--lead ID] [--json] [--database-url URL]")
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	imageURL := fs.String("url", "", "https URL of the image, on a host in --allowed-hosts")
	file := fs.String("file", "", "an image file to upload (JPEG, PNG, GIF or WebP)")
	lead := fs.Int64("lead", 0, "attach the job to this lead id (erasing the lead deletes the job)")
	hosts := fs.String("allowed-hosts", strings.Join(cfg.Images.AllowedHosts, ","), "comma-separated hosts an image URL may name (default $MAILSLOT_IMAGE_ALLOWED_HOSTS)")
	attempts := fs.Int("max-attempts", cfg.Images.MaxAttempts, "attempts before the job is dead (default $MAILSLOT_IMAGE_MAX_ATTEMPTS)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*imageURL == "") == (*file == "") {
		return fmt.Errorf("%w: give exactly one of --url and --file", errUsage)
	}
	lim := images.LimitsFromConfig(cfg.Images)
	lim.AllowedHosts = nil
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			lim.AllowedHosts = append(lim.AllowedHosts, h)
		}
	}
	sub := images.Submission{URL: *imageURL, SubmittedBy: "mailslotctl", MaxAttempts: *attempts}
	if *lead > 0 {
		sub.LeadID = lead
	}
	if *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		sub.Image, err = io.ReadAll(io.LimitReader(f, lim.MaxUploadBytes+1))
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", *file, err)
		}
	}
	conn, err := imagesConn(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	j, err := images.NewStore(conn).Submit(ctx, sub, lim)
	var inErr *images.InputError
	switch {
	case errors.As(err, &inErr):
		hint := ""
		if inErr.Code == "host_not_allowed" {
			hint = " (add the host to --allowed-hosts or MAILSLOT_IMAGE_ALLOWED_HOSTS)"
		}
		return fmt.Errorf("%w: %s is %s%s", errUsage, inErr.Field, strings.ReplaceAll(inErr.Code, "_", " "), hint)
	case errors.Is(err, images.ErrLeadNotFound):
		return fmt.Errorf("%w: lead %d does not exist", errUsage, *lead)
	case errors.Is(err, images.ErrUploadStoreFull):
		return fmt.Errorf("upload storage is full (MAILSLOT_IMAGE_UPLOAD_STORE_BYTES): wait for jobs to finish, or cancel dead ones")
	case err != nil:
		return imagesSchemaHint(err)
	}
	if *asJSON {
		return imagesJSON(e.stdout, j)
	}
	fmt.Fprintf(e.stdout, "queued image job %d\n", j.ID)
	return nil
}

func imagesChange(ctx context.Context, e env, op string, args []string) error {
	fs := newFlags(e, "images "+op, "images "+op+" ID... [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: images %s needs at least one job ID", errUsage, op)
	}
	var ids []int64
	for _, a := range fs.Args() {
		id, err := imageJobID(a)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	conn, err := imagesConn(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	store := images.NewStore(conn)
	change := store.Cancel
	if op == "retry" {
		change = store.Retry
	}
	return changeJobs(ctx, e, op, "image", ids, func(ctx context.Context, id int64) (string, error) {
		j, err := change(ctx, id)
		return j.State, err
	}, imagesSchemaHint)
}

var errImagesSchema = errors.New("no image tables in Postgres: run mailslotctl migrate")

// imagesSchemaHint turns a missing table into the fix.
func imagesSchemaHint(err error) error {
	if err != nil && strings.Contains(err.Error(), "SQLSTATE 42P01") {
		return errImagesSchema
	}
	return err
}

func imageJobID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: %q is not a job ID", errUsage, s)
	}
	return id, nil
}

func imageLead(j images.Job) string {
	if j.LeadID == nil {
		return "-"
	}
	return strconv.FormatInt(*j.LeadID, 10)
}

func imageShorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func imagesJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
