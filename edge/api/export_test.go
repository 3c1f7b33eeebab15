package api

import "time"

// SetRecheckDelays replaces the re-check delays for a test and returns a
// function that restores them.
func SetRecheckDelays(d ...time.Duration) func() {
	old := recheckDelays
	recheckDelays = d
	return func() { recheckDelays = old }
}
