// Package addrscrubtest holds the cases every implementation of the
// address-finding rules must agree on: addrscrub in Go (the outbox) and
// mailslot.address_pattern in Postgres.
package addrscrubtest

// Address is the address the cases erase.
const Address = "ann.lee+news@example.com"

// Case is a string value and what erasing Address leaves of it.
type Case struct {
	Name, In, Want string
}

// Cases covers the wrappings an address comes in and the longer addresses
// that merely contain it.
var Cases = []Case{
	{"bare", "ann.lee+news@example.com", "[email]"},
	{"upper case", "Ann.Lee+News@EXAMPLE.com", "[email]"},
	{"mailto", "mailto:ann.lee+news@example.com", "mailto:[email]"},
	{"angle brackets", "Ann <ann.lee+news@example.com>", "Ann <[email]>"},
	{"quotes", `"ann.lee+news@example.com"`, `"[email]"`},
	{"single quotes", "'ann.lee+news@example.com'", "'[email]'"},
	{"trailing dot", "write to ann.lee+news@example.com.", "write to [email]."},
	{"percent-encoded at", "ann.lee%2Bnews%40example.com", "[email]"},
	{"percent-encoded lower hex", "ann.lee%2bnews%40example.com", "[email]"},
	{"every character encoded", "%61%6E%6E%2E%6C%65%65%2B%6E%65%77%73%40%65%78%61%6D%70%6C%65%2E%63%6F%6D", "[email]"},
	{"encoded mailto in a URL", "https://x.example/?to=mailto%3Aann.lee%2Bnews%40example.com&y=1", "https://x.example/?to=mailto%3A[email]&y=1"},
	{"encoded brackets", "%3Cann.lee%2Bnews%40example.com%3E", "%3C[email]%3E"},
	{"in a query", "https://x.example/?e=ann.lee+news@example.com", "https://x.example/?e=[email]"},
	{"twice", "ann.lee+news@example.com,ann.lee+news@example.com", "[email],[email]"},
	{"after a newline", "hi\nann.lee+news@example.com", "hi\n[email]"},
	{"longer local part", "joann.lee+news@example.com", "joann.lee+news@example.com"},
	{"longer local part with a dot", "x.ann.lee+news@example.com", "x.ann.lee+news@example.com"},
	{"longer domain", "ann.lee+news@example.com.au", "ann.lee+news@example.com.au"},
	{"longer domain encoded dot", "ann.lee+news@example.com%2Eau", "ann.lee+news@example.com%2Eau"},
	{"domain with a hyphen", "ann.lee+news@example.com-mail.net", "ann.lee+news@example.com-mail.net"},
	{"another address", "bob@example.com", "bob@example.com"},
	{"nothing", "plain text", "plain text"},
}
