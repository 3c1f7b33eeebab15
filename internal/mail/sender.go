package mail

import (
	"errors"
	"fmt"
	"strings"
)

// Sender is the sender identification CASL requires in every commercial
// electronic message: who sends it, a postal address, and a way to reach
// the sender (an email address, a telephone number or a web address).
// Production refuses to start without a complete one, because a message
// without it is unlawful to send, confirmation requests included.
type Sender struct {
	Name          string
	PostalAddress string
	Contact       string
}

// Validate reports every missing field by its environment variable's
// meaning, so that an operator sees in one error what to set.
func (s Sender) Validate() error {
	var missing []string
	if strings.TrimSpace(s.Name) == "" {
		missing = append(missing, "sender name")
	}
	if strings.TrimSpace(s.PostalAddress) == "" {
		missing = append(missing, "postal address")
	}
	if strings.TrimSpace(s.Contact) == "" {
		missing = append(missing, "contact (an email address, telephone number or web address)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("sender identification is incomplete: missing %s", strings.Join(missing, ", "))
	}
	for _, f := range []string{s.Name, s.Contact} {
		if strings.ContainsAny(f, "\r\n") {
			return errors.New("sender identification: name and contact must be single lines")
		}
	}
	return nil
}
