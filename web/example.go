package web

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
)

//go:embed example
var exampleFiles embed.FS

// exampleEdge is the edge origin written into the example site's files. It is
// what `mailslot serve` listens on by default, so the files also work when
// opened straight from disk next to a local edge.
const exampleEdge = "http://127.0.0.1:8080"

// Markers that ExampleSite fills in for each request.
var (
	idempotencyMarker = []byte(`name="idempotency_key" value=""`)
	errorMarker       = []byte(`<!--mailslot:error-->`)
	fieldMarker       = []byte(`<!--mailslot:field-->`)
	inlineScript      = regexp.MustCompile(`(?s)<script>(.*?)</script>`)
)

type exampleFile struct {
	body        []byte
	contentType string
	isHTML      bool
}

// ExampleSite returns a handler that serves the example marketing site in
// web/example with every http://127.0.0.1:8080 replaced by edgeURL, the origin
// of the edge that takes its sign-ups, for example "https://edge.example.com".
//
// The site is static; the handler only fills in what a static host cannot:
// a fresh idempotency_key in each served form (so a form posted without
// JavaScript and then posted again is stored once), and the reason on
// error.html (so it shows without JavaScript). HTML is sent with
// Cache-Control: no-store and a Content-Security-Policy that allows scripts
// and connections only to the site itself and the edge.
//
// ExampleSite panics if edgeURL is not an absolute http or https URL; it is
// meant to be called once at start-up with a flag's value.
func ExampleSite(edgeURL string) http.Handler {
	edge, err := edgeOrigin(edgeURL)
	if err != nil {
		panic(fmt.Sprintf("web.ExampleSite: %v", err))
	}
	root, err := fs.Sub(exampleFiles, "example")
	if err != nil {
		panic(fmt.Sprintf("web.ExampleSite: %v", err))
	}
	files := map[string]exampleFile{}
	var hashes []string
	err = fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(root, name)
		if err != nil {
			return err
		}
		body = bytes.ReplaceAll(body, []byte(exampleEdge), []byte(edge))
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		isHTML := strings.HasPrefix(ctype, "text/html")
		if isHTML {
			for _, m := range inlineScript.FindAllSubmatch(body, -1) {
				sum := sha256.Sum256(m[1])
				hashes = append(hashes, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
			}
		}
		files["/"+name] = exampleFile{body: body, contentType: ctype, isHTML: isHTML}
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("web.ExampleSite: read embedded site: %v", err))
	}
	csp := strings.Join([]string{
		"default-src 'self'",
		"script-src 'self' " + edge + " " + strings.Join(hashes, " "),
		"connect-src " + edge,
		"img-src 'self' data:",
		"style-src 'self'",
		"object-src 'none'",
		"base-uri 'none'",
		"frame-ancestors 'none'",
	}, "; ")
	return &exampleSite{files: files, csp: csp}
}

type exampleSite struct {
	files map[string]exampleFile
	csp   string
}

func (s *exampleSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := path.Clean("/" + r.URL.Path)
	if name == "/" {
		name = "/index.html"
	}
	f, ok := s.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	body := f.body
	if f.isHTML {
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", s.csp)
		h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		body = bytes.ReplaceAll(body, idempotencyMarker, []byte(`name="idempotency_key" value="`+newKey()+`"`))
		q := r.URL.Query()
		body = bytes.ReplaceAll(body, errorMarker, []byte(orNone(q.Get("error"))))
		body = bytes.ReplaceAll(body, fieldMarker, []byte(orNone(q.Get("field"))))
	} else {
		h.Set("Cache-Control", "public, max-age=300")
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// orNone escapes a query value for HTML; the edge's codes are shown as they
// are, but the query string is the visitor's to change.
func orNone(v string) string {
	if v == "" {
		return "none"
	}
	if len(v) > 100 {
		v = strings.ToValidUTF8(v[:100], "")
	}
	return html.EscapeString(v)
}

// edgeOrigin returns scheme://host of an absolute http(s) URL.
func edgeOrigin(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("parse edge URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("edge URL %q is not an absolute http(s) URL", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// newKey returns a random UUID (version 4) for a form's idempotency_key.
func newKey() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
