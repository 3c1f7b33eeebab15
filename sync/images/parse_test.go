package images_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

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

// sign is an independent implementation of Replicate's signing scheme.
func sign(key []byte, id, ts string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123"))
	key, err := images.WebhookKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"id":"p1","status":"succeeded"}`)
	good := sign(key, "msg_1", ts, body)
	other := sign([]byte("another key"), "msg_1", ts, body)
	header := func(id, ts, sig string) http.Header {
		h := http.Header{}
		if id != "" {
			h.Set("webhook-id", id)
		}
		if ts != "" {
			h.Set("webhook-timestamp", ts)
		}
		if sig != "" {
			h.Set("webhook-signature", sig)
		}
		return h
	}
	for _, c := range []struct {
		name string
		h    http.Header
		body []byte
		at   time.Time
		want error
	}{
		{"valid", header("msg_1", ts, good), body, now, nil},
		{"one of several (rotation)", header("msg_1", ts, other+" "+good), body, now, nil},
		{"within tolerance", header("msg_1", ts, good), body, now.Add(4 * time.Minute), nil},
		{"wrong key", header("msg_1", ts, other), body, now, images.ErrWebhookSignature},
		{"tampered body", header("msg_1", ts, good), []byte(`{"id":"p1","status":"failed"}`), now, images.ErrWebhookSignature},
		{"other id", header("msg_2", ts, good), body, now, images.ErrWebhookSignature},
		{"unknown version", header("msg_1", ts, "v2,"+good[3:]), body, now, images.ErrWebhookSignature},
		{"stale", header("msg_1", ts, good), body, now.Add(6 * time.Minute), images.ErrWebhookStale},
		{"from the future", header("msg_1", ts, good), body, now.Add(-6 * time.Minute), images.ErrWebhookStale},
		{"bad timestamp", header("msg_1", "yesterday", good), body, now, images.ErrWebhookStale},
		{"no signature", header("msg_1", ts, ""), body, now, images.ErrWebhookUnsigned},
		{"no id", header("", ts, good), body, now, images.ErrWebhookUnsigned},
	} {
		if err := images.VerifyWebhook(key, c.h, c.body, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	for _, bad := range []string{"", "abc", "whsec_", "whsec_%%%"} {
		if _, err := images.WebhookKey(bad); err == nil {
			t.Errorf("WebhookKey(%q) accepted", bad)
		}
	}
}

func TestCheckURL(t *testing.T) {
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
		got, err := images.CheckURL(c.in, allowed)
		var ie *images.InputError
		code := ""
		if errors.As(err, &ie) {
			code = ie.Code
		}
		if got != c.want || code != c.code {
			t.Errorf("CheckURL(%q) = %q, %q; want %q, %q", c.in, got, code, c.want, c.code)
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
