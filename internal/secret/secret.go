// Package secret compares secrets without telling an attacker, through
// timing, how close a guess came.
package secret

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Equal reports whether a and b are the same string, in time that depends
// on neither their contents nor how long the shared prefix is, nor on
// whether their lengths match.
//
// subtle.ConstantTimeCompare alone returns at once when the lengths
// differ, so timing a bearer token's answers tells an attacker the
// secret's length before any of its bytes. Comparing SHA-256 digests
// instead compares 32 bytes every time; the digests' own cost grows only
// with the length of each input in 64-byte blocks, the same for every
// guess against one secret.
//
// Equal("", "") is true: a caller that accepts a configured secret must
// refuse an empty one itself.
func Equal(a, b string) bool {
	da, db := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(da[:], db[:]) == 1
}
