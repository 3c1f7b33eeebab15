package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/sync/mailer"
)

const propertiesUsage = `usage: mailslotctl properties <command> [flags]

commands:
  set    change a property's mail settings; only the flags given change
  show   a property's mail settings (the defaults when it has none)
  list   the properties that have settings

A property without settings uses the fleet's MAILSLOT_MAIL_FROM and
MAILSLOT_SENDER_*, double opt-in on, no welcome, and the built-in templates.
Templates are read from files and checked here: a template that does not
parse, names a field that does not exist, writes its own <html> document,
or (for a confirmation) leaves out {{.ConfirmURL}} is refused, so a broken
template never reaches a recipient. An empty file restores the default.
`

func runProperties(ctx context.Context, e env, args []string) error {
	return runSubcommand(ctx, e, args, "properties", propertiesUsage, map[string]subcommand{
		"set": propertiesSet, "show": propertiesShow, "list": propertiesList,
	})
}

func propertiesSet(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "properties set", "properties set --property P [settings] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	name := fs.String("property", "", "the property, as sign-ups name it (required)")
	display := fs.String("display-name", "", "the property's name as recipients know it (empty: the property)")
	from := fs.String("from", "", `"Name <address>" to send from (empty: MAILSLOT_MAIL_FROM)`)
	senderName := fs.String("sender-name", "", "CASL sender name (empty: MAILSLOT_SENDER_NAME)")
	senderAddress := fs.String("sender-address", "", `CASL postal address, "\n" between lines (empty: MAILSLOT_SENDER_ADDRESS)`)
	senderContact := fs.String("sender-contact", "", "CASL contact: email, phone or web address (empty: MAILSLOT_SENDER_CONTACT)")
	doi := fs.String("double-opt-in", "", "on|off: send pending sign-ups a confirmation request")
	welcome := fs.String("welcome", "", "on|off: send a welcome after a confirmation")
	files := map[string]*string{}
	for _, k := range []string{"confirmation", "welcome"} {
		for _, part := range []string{"subject", "text", "html"} {
			flagName := k + "-" + part
			files[flagName] = fs.String(flagName, "", fmt.Sprintf("file with the %s %s template", k, part))
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("%w: properties set needs --property", errUsage)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ps := mailer.NewProperties(conn)
	p, _, err := ps.Get(ctx, *name)
	if err != nil {
		return mailSchemaHint(err)
	}
	set := func(flagName string, dst *string, v string) {
		if given[flagName] {
			*dst = v
		}
	}
	set("display-name", &p.DisplayName, *display)
	set("from", &p.MailFrom, *from)
	set("sender-name", &p.SenderName, *senderName)
	set("sender-address", &p.SenderPostalAddress, unescapeLines(*senderAddress))
	set("sender-contact", &p.SenderContact, *senderContact)
	for flagName, dst := range map[string]*bool{"double-opt-in": &p.DoubleOptIn, "welcome": &p.Welcome} {
		if !given[flagName] {
			continue
		}
		v := map[string]*string{"double-opt-in": doi, "welcome": welcome}[flagName]
		b, ok := onOff(*v)
		if !ok {
			return fmt.Errorf("%w: --%s %q: use on or off", errUsage, flagName, *v)
		}
		*dst = b
	}
	for flagName, path := range files {
		if !given[flagName] {
			continue
		}
		b, err := os.ReadFile(*path)
		if err != nil {
			return fmt.Errorf("read --%s: %w", flagName, err)
		}
		*templateField(&p.Templates, flagName) = string(b)
	}
	got, err := ps.Set(ctx, p)
	if err != nil {
		return fmt.Errorf("property %q not changed: %w", *name, err)
	}
	fmt.Fprintf(e.stdout, "property %s updated\n", got.Property)
	return printProperty(e, got, true)
}

// templateField is the source field a --<kind>-<part> flag sets.
func templateField(src *mail.TemplateSources, flagName string) *string {
	m := map[string]*string{
		"confirmation-subject": &src.Confirmation.Subject, "confirmation-text": &src.Confirmation.Text,
		"confirmation-html": &src.Confirmation.HTML, "welcome-subject": &src.Welcome.Subject,
		"welcome-text": &src.Welcome.Text, "welcome-html": &src.Welcome.HTML,
	}
	return m[flagName]
}

func onOff(v string) (bool, bool) {
	switch v {
	case "on", "true", "yes", "1":
		return true, true
	case "off", "false", "no", "0":
		return false, true
	}
	return false, false
}

func unescapeLines(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] == 'n' {
			out = append(out, '\n')
			i++
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

func propertiesShow(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "properties show", "properties show --property P [--json] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	name := fs.String("property", "", "the property (required)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("%w: properties show needs --property", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	p, found, err := mailer.NewProperties(conn).Get(ctx, *name)
	if err != nil {
		return mailSchemaHint(err)
	}
	if *asJSON {
		return imagesJSON(e.stdout, p)
	}
	return printProperty(e, p, found)
}

func printProperty(e env, p mailer.Property, found bool) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	def := func(s, d string) string {
		if s == "" {
			return d
		}
		return strconv.Quote(s)
	}
	tpl := func(s mail.TemplateSource) string {
		if s == (mail.TemplateSource{}) {
			return "built-in"
		}
		b, _ := json.Marshal(map[string]bool{"subject": s.Subject != "", "text": s.Text != "", "html": s.HTML != ""})
		return "custom " + string(b)
	}
	onoff := map[bool]string{true: "on", false: "off"}
	if !found {
		fmt.Fprintf(tw, "(no settings stored: these are the defaults)\n")
	}
	fmt.Fprintf(tw, "property\t%s\n", p.Property)
	fmt.Fprintf(tw, "display name\t%s\n", def(p.DisplayName, "(the property)"))
	fmt.Fprintf(tw, "from\t%s\n", def(p.MailFrom, "(MAILSLOT_MAIL_FROM)"))
	fmt.Fprintf(tw, "sender name\t%s\n", def(p.SenderName, "(MAILSLOT_SENDER_NAME)"))
	fmt.Fprintf(tw, "sender address\t%s\n", def(p.SenderPostalAddress, "(MAILSLOT_SENDER_ADDRESS)"))
	fmt.Fprintf(tw, "sender contact\t%s\n", def(p.SenderContact, "(MAILSLOT_SENDER_CONTACT)"))
	fmt.Fprintf(tw, "double opt-in\t%s\n", onoff[p.DoubleOptIn])
	fmt.Fprintf(tw, "welcome\t%s\n", onoff[p.Welcome])
	fmt.Fprintf(tw, "confirmation templates\t%s\n", tpl(p.Templates.Confirmation))
	fmt.Fprintf(tw, "welcome templates\t%s\n", tpl(p.Templates.Welcome))
	return tw.Flush()
}

func propertiesList(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "properties list", "properties list [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	names, err := mailer.NewProperties(conn).List(ctx)
	if err != nil {
		return mailSchemaHint(err)
	}
	for _, n := range names {
		fmt.Fprintln(e.stdout, n)
	}
	return nil
}
