package nodeid

import "testing"

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		id string
		ok bool
	}{
		{"n1", true}, {"148e21ea", true}, {"edge-a.fra_1", true},
		{"", false}, {".", false}, {"..", false},
		{"x/../evil@host", false}, {"evil.example:9090", false}, {"a b", false},
		{"a?b", false}, {"a#b", false}, {"a%2fb", false}, {"é", false},
		{string(make([]byte, MaxLen+1)), false},
	} {
		if err := Check(c.id); (err == nil) != c.ok {
			t.Errorf("Check(%q) = %v, want ok %v", c.id, err, c.ok)
		}
	}
}
