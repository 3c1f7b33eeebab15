package loadgen

import (
	"bytes"
	"fmt"
	"strconv"
)

// Placeholder marks where a Body's per-request number goes. Every copy of
// it in the template is replaced by the same zero-padded decimal, so that a
// template can carry it in more than one field (the email and an
// idempotency key, say).
const Placeholder = "{{n}}"

// numWidth is how many digits a request number takes. Fixed width lets a
// worker patch the number into its own copy of the encoded body in place:
// no encoding and no allocation per request.
const numWidth = 12

// Body is a pre-encoded request body with slots for a request number, so
// that every request can carry a unique email without being encoded anew.
type Body struct {
	encoded []byte
	slots   []int // offsets of the numWidth-digit slots in encoded
}

// NewBody prepares template, which must contain Placeholder at least once
// in a spot where decimal digits need no escaping.
func NewBody(template string) (*Body, error) {
	var b Body
	pad := bytes.Repeat([]byte("0"), numWidth)
	rest := []byte(template)
	for {
		i := bytes.Index(rest, []byte(Placeholder))
		if i < 0 {
			b.encoded = append(b.encoded, rest...)
			break
		}
		b.encoded = append(b.encoded, rest[:i]...)
		b.slots = append(b.slots, len(b.encoded))
		b.encoded = append(b.encoded, pad...)
		rest = rest[i+len(Placeholder):]
	}
	if len(b.slots) == 0 {
		return nil, fmt.Errorf("body template has no %s: requests would not be unique", Placeholder)
	}
	return &b, nil
}

// MustBody is NewBody for templates that are constants.
func MustBody(template string) *Body {
	b, err := NewBody(template)
	if err != nil {
		panic(err)
	}
	return b
}

// Len is the encoded body's length; it is the same for every number.
func (b *Body) Len() int { return len(b.encoded) }

// Buffer returns a private copy of the encoded body for one worker to
// patch with Fill.
func (b *Body) Buffer() []byte { return bytes.Clone(b.encoded) }

// Fill writes n into every slot of buf, a Buffer of b.
func (b *Body) Fill(buf []byte, n uint64) {
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], n, 10)
	if len(d) > numWidth {
		d = d[len(d)-numWidth:]
	}
	for _, off := range b.slots {
		slot := buf[off : off+numWidth]
		pad := numWidth - len(d)
		for i := range pad {
			slot[i] = '0'
		}
		copy(slot[pad:], d)
	}
}
