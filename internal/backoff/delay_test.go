package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	d := NewDelay(100*time.Millisecond, 700*time.Millisecond)
	for i, ceiling := range []time.Duration{100, 200, 400, 700, 700} {
		ceiling *= time.Millisecond
		w := d.Failed()
		if w < ceiling/2 || w > ceiling {
			t.Errorf("failure %d: wait %v, want within [%v, %v]", i+1, w, ceiling/2, ceiling)
		}
	}
	d.Reset()
	if w := d.Failed(); w > 100*time.Millisecond {
		t.Errorf("after Reset: wait %v, want at most Min", w)
	}
	if def := NewDelay(0, 0); def.Min != DefaultMin || def.Max != DefaultMax {
		t.Errorf("NewDelay(0, 0) = %v..%v, want the defaults", def.Min, def.Max)
	}
}
