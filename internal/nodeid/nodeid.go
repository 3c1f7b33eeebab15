// Package nodeid is the one rule for what may name an edge node. A node
// id becomes a path segment of its replica, a key of the Postgres ledger
// and, through mailslotctl's --edge-template, part of a URL; so it is
// checked where it is configured, where it is read back from Postgres and
// wherever the CLI is given one.
package nodeid

import "fmt"

// MaxLen bounds a node id (Fly machine ids are 14 characters, hostnames
// at most 63 per label).
const MaxLen = 128

// Check reports whether id can name a node: letters, digits, '-', '_' and
// '.', not "." or "..". Nothing in such an id can end a URL's host, add
// user info, or climb a path.
func Check(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > MaxLen {
		return fmt.Errorf("node id %q is not valid: use 1 to %d letters, digits, '-', '_' and '.'", id, MaxLen)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("node id %q is not valid: use letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}
