package mailslot_test

import (
	"errors"
	"testing"

	"github.com/mailslot/mailslot"
)

func TestCheckImageURL(t *testing.T) {
	t.Parallel()
	allowed := []string{"img.example", "cdn.example:8443"}
	for _, c := range []struct{ in, want, code string }{
		{"https://img.example/a.jpg", "https://img.example/a.jpg", ""},
		{"HTTPS://IMG.example/a.jpg#frag", "https://img.example/a.jpg", ""},
		{"https://img.example:443/a.jpg", "https://img.example:443/a.jpg", ""},
		{"https://cdn.example:8443/a.jpg", "https://cdn.example:8443/a.jpg", ""},
		{"https://cdn.example/a.jpg", "", "host_not_allowed"},
		{"https://img.example:8080/a.jpg", "", "host_not_allowed"},
		{"https://sub.img.example/a.jpg", "", "host_not_allowed"},
		{"https://img.example.evil.test/a.jpg", "", "host_not_allowed"},
		{"http://img.example/a.jpg", "", "not_https"},
		{"https://user:pw@img.example/a.jpg", "", "invalid"},
		{"img.example/a.jpg", "", "invalid"},
		{"", "", "required"},
	} {
		got, err := mailslot.CheckImageURL(c.in, allowed)
		var ie *mailslot.FieldError
		code := ""
		if errors.As(err, &ie) {
			code = ie.Code
		}
		if got != c.want || code != c.code {
			t.Errorf("CheckImageURL(%q) = %q, %q; want %q, %q", c.in, got, code, c.want, c.code)
		}
	}
}
