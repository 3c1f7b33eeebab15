package challenge

import "time"

// IssueNumber issues a challenge whose secret number is n, so that tests
// can exercise a given cost without waiting on chance.
func (p *PoW) IssueNumber(property string, now time.Time, n int64) (Challenge, error) {
	return p.issue(property, now, n)
}
