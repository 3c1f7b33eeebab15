// Package web holds the browser side of mailslot: the client script that the
// edge serves at /v1/mailslot.js, and an example marketing site that uses it
// (see ExampleSite and README.md).
package web

import _ "embed"

// Script is mailslot.js, the client script that marketing sites load with
// <script defer src="https://<edge>/v1/mailslot.js" data-property="<site>">.
// It needs no build step: the edge serves these bytes as they are, and sets
// the content type and the cache headers itself.
//
//go:embed mailslot.js
var Script []byte
