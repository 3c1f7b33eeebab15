package images_test

import (
	"errors"
	"testing"

	"github.com/mailslot/mailslot/sync/images"
)

func TestParseFaces(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		out  string
		want int
		ok   bool
	}{
		{`[]`, 0, true},
		{`[{"bbox":[1,2,3,4],"embedding":[0.1]},{"bbox":[5,6,7,8],"embedding":[0.2]}]`, 2, true},
		{`{"faces":[{"box":{}},{"box":{}},{"box":{}}]}`, 3, true},
		{`{"faces":4}`, 4, true},
		{`{"face_count":1}`, 1, true},
		{`{"num_faces":0}`, 0, true},
		{`5`, 5, true},
		{`-1`, 0, false},
		{`{"faces":"many"}`, 0, false},
		{`"two faces"`, 0, false},
		{`null`, 0, false},
		{`not json`, 0, false},
	} {
		n, err := images.ParseFaces([]byte(c.out))
		if (err == nil) != c.ok || n != c.want {
			t.Errorf("ParseFaces(%s) = %d, %v; want %d, ok %v", c.out, n, err, c.want, c.ok)
		}
	}
}

func TestParseCaption(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		out, want string
		ok        bool
	}{
		{`"A dog on a beach."`, "A dog on a beach.", true},
		{`["A ", "dog ", "on ", "a ", "beach."]`, "A dog on a beach.", true},
		{`[{"generated_text":" A dog. "}]`, "A dog.", true},
		{`{"caption":"A dog."}`, "A dog.", true},
		{`{"generated_text":"A dog."}`, "A dog.", true},
		{`{"text":"A dog."}`, "A dog.", true},
		{`""`, "", false},
		{`[]`, "", false},
		{`[1,2]`, "", false},
		{`{"other":"x"}`, "", false},
		{`null`, "", false},
	} {
		s, err := images.ParseCaption([]byte(c.out))
		if (err == nil) != c.ok || s != c.want {
			t.Errorf("ParseCaption(%s) = %q, %v; want %q, ok %v", c.out, s, err, c.want, c.ok)
		}
	}
}

func TestParseReplicatePrediction(t *testing.T) {
	t.Parallel()
	p, err := images.ParseReplicatePrediction([]byte(`{"id":"abc","status":"failed","error":"boom","metrics":{"predict_time":1.25},"output":null}`))
	if err != nil || p.ID != "abc" || p.Status != "failed" || p.Error != "boom" || p.PredictSeconds == nil || *p.PredictSeconds != 1.25 {
		t.Errorf("got %+v, %v", p, err)
	}
	for _, bad := range []string{`{}`, `{"id":"x","status":"exploded"}`, `{"status":"succeeded"}`, `[`, `null`} {
		if _, err := images.ParseReplicatePrediction([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestCheckImage(t *testing.T) {
	t.Parallel()
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 32)...)
	jpeg := append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 32)...)
	for _, c := range []struct {
		name string
		data []byte
		max  int64
		want string
		code string
	}{
		{"png", png, 100, "image/png", ""},
		{"jpeg", jpeg, 100, "image/jpeg", ""},
		{"too large", png, 10, "", "too_large"},
		{"html", []byte("<html><body>hi</body></html>"), 100, "", "not_an_image"},
		{"empty", nil, 100, "", "required"},
	} {
		got, err := images.CheckImage(c.data, c.max)
		var ie *images.InputError
		code := ""
		if errors.As(err, &ie) {
			code = ie.Code
		}
		if got != c.want || code != c.code {
			t.Errorf("%s: %q %q, want %q %q", c.name, got, code, c.want, c.code)
		}
	}
}

// FuzzParse checks that no provider answer, however odd, panics a parser.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`[]`, `{"faces":[{}]}`, `["a","b"]`, `[{"generated_text":"x"}]`,
		`{"id":"x","status":"succeeded","output":[1],"metrics":{"predict_time":-3}}`, `{"error":{"x":1}}`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = images.ParseFaces(b)
		if s, err := images.ParseCaption(b); err == nil && s == "" {
			t.Errorf("empty caption accepted from %q", b)
		}
		if p, err := images.ParseReplicatePrediction(b); err == nil && (p.ID == "" || (p.PredictSeconds != nil && *p.PredictSeconds < 0)) {
			t.Errorf("bad prediction accepted from %q: %+v", b, p)
		}
	})
}
