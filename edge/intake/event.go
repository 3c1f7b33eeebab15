package intake

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pii"
)

// Limits on an event's props map.
const (
	maxProps     = 20
	maxPropKey   = 64
	maxPropValue = 256
)

// DecodeEvents parses one event object or {"events":[…]} with at most max
// events. JSON and sendBeacon's text/plain carry the same JSON.
func DecodeEvents(f Format, body []byte, max int) ([]mailslot.Event, error) {
	if f != FormatJSON && f != FormatText {
		return nil, &Error{Code: CodeInvalidJSON}
	}
	m, err := jsonObject(body)
	if err != nil {
		return nil, err
	}
	raw, batch := m["events"]
	if !batch {
		ev, errs := decodeEvent(m, "")
		if err := errs.err(); err != nil {
			return nil, err
		}
		return []mailslot.Event{ev}, nil
	}
	if len(m) != 1 {
		errs := fieldErrs{}
		for k := range m {
			if k != "events" {
				errs.add(k, FieldUnknown)
			}
		}
		return nil, errs.err()
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, &Error{Code: CodeInvalidFields, Fields: map[string]string{"events": FieldInvalid}}
	}
	if len(items) == 0 {
		return nil, &Error{Code: CodeInvalidFields, Fields: map[string]string{"events": FieldRequired}}
	}
	if len(items) > max {
		return nil, &Error{Code: CodeTooMany, Fields: map[string]string{"events": FieldTooLong}}
	}
	out := make([]mailslot.Event, 0, len(items))
	errs := fieldErrs{}
	for i, item := range items {
		prefix := "events." + strconv.Itoa(i) + "."
		obj, err := jsonObject(item)
		if err != nil {
			errs.add(prefix[:len(prefix)-1], FieldInvalid)
			continue
		}
		ev, e := decodeEvent(obj, prefix)
		for k, v := range e {
			errs.add(k, v)
		}
		out = append(out, ev)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func decodeEvent(m map[string]json.RawMessage, prefix string) (mailslot.Event, fieldErrs) {
	var ev mailslot.Event
	errs := fieldErrs{}
	str := func(k string, raw json.RawMessage) (string, bool) {
		s, ok := jsonString(raw)
		if !ok {
			errs.add(prefix+k, FieldInvalid)
		}
		return s, ok
	}
	for k, raw := range m {
		var code string
		switch k {
		case "type":
			if s, ok := str(k, raw); ok {
				switch s {
				case mailslot.EventPageView, mailslot.EventFormSubmit, mailslot.EventClick, mailslot.EventCustom:
					ev.Type = s
				case "":
				default:
					code = FieldInvalid
				}
			}
		case "property":
			if s, ok := str(k, raw); ok {
				ev.Property, code = ident(s, maxProperty)
			}
		case "name":
			if s, ok := str(k, raw); ok {
				ev.Name, code = ident(s, maxShort)
			}
		case "page":
			if s, ok := str(k, raw); ok {
				ev.Page, code = urlText(s, maxURL)
			}
		case "referrer":
			if s, ok := str(k, raw); ok {
				ev.Referrer, code = urlText(s, maxURL)
			}
		case "submission_id":
			if s, ok := str(k, raw); ok {
				ev.SubmissionID, code = ident(s, maxShort)
			}
		case "utm":
			vals := map[string]string{}
			if err := flattenUTM(raw, vals); err != nil {
				code = FieldInvalid
				break
			}
			for uk, uv := range vals {
				name := strings.TrimPrefix(uk, "utm_")
				p := utmField(&ev.UTM, name)
				if p == nil {
					errs.add(prefix+"utm."+name, FieldUnknown)
					continue
				}
				var c string
				if *p, c = urlText(uv, maxUTM); c != "" {
					errs.add(prefix+"utm."+name, c)
				}
			}
		case "props":
			ev.Props = decodeProps(raw, prefix, errs)
		case "ts":
			t, ok := clientTime(raw)
			if !ok {
				code = FieldInvalid
				break
			}
			ev.ClientTime = t
		default:
			code = FieldUnknown
		}
		if code != "" {
			errs.add(prefix+k, code)
		}
	}
	if ev.Type == "" {
		if _, bad := errs[prefix+"type"]; !bad {
			errs.add(prefix+"type", FieldRequired)
		}
	}
	if ev.Property == "" {
		if _, bad := errs[prefix+"property"]; !bad {
			errs.add(prefix+"property", FieldRequired)
		}
	}
	return ev, errs
}

// decodeProps accepts a flat map of short keys to strings, finite numbers,
// booleans or null. A value holding an email address is refused: telemetry
// must not carry personal data that erasure would have to chase.
func decodeProps(raw json.RawMessage, prefix string, errs fieldErrs) map[string]any {
	if string(raw) == "null" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		errs.add(prefix+"props", FieldInvalid)
		return nil
	}
	if len(m) > maxProps {
		errs.add(prefix+"props", FieldTooLong)
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		key := prefix + "props." + k
		if _, code := ident(k, maxPropKey); code != "" || k == "" {
			errs.add(key, FieldInvalid)
			continue
		}
		switch v := v.(type) {
		case string:
			s, code := text(v, maxPropValue)
			if code != "" {
				errs.add(key, code)
				continue
			}
			if pii.ContainsEmail(s) {
				errs.add(key, FieldPII)
				continue
			}
			out[k] = s
		case float64:
			if math.IsInf(v, 0) || math.IsNaN(v) {
				errs.add(key, FieldInvalid)
				continue
			}
			out[k] = v
		case bool, nil:
			out[k] = v
		default:
			errs.add(key, FieldInvalid)
		}
	}
	return out
}

// maxClientMillis bounds client timestamps (about the year 5138) so that
// both spellings accept the same range and the stored payload's time always
// encodes: encoding/json refuses years outside 0000-9999.
const maxClientMillis = 1e14

// clientTime accepts RFC 3339 text or epoch milliseconds, from the Unix
// epoch to maxClientMillis.
func clientTime(raw json.RawMessage) (*time.Time, bool) {
	if string(raw) == "null" {
		return nil, true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.Before(time.Unix(0, 0)) || t.UnixMilli() > maxClientMillis {
			return nil, false
		}
		t = t.UTC()
		return &t, true
	}
	var ms float64
	if err := json.Unmarshal(raw, &ms); err != nil || ms < 0 || ms > maxClientMillis || math.IsNaN(ms) {
		return nil, false
	}
	t := time.UnixMilli(int64(ms)).UTC()
	return &t, true
}
