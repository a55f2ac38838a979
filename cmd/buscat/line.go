package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/busline/bus"
)

// line is one event as sub prints it: one JSON object per line.
type line struct {
	Topic       string            `json:"topic"`
	Source      string            `json:"source"`
	Seq         uint64            `json:"seq"`
	Time        *time.Time        `json:"time"` // null when the message had no envelope
	ContentType string            `json:"content_type,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Encoding    string            `json:"encoding"` // "json", "text" or "base64"
	Payload     json.RawMessage   `json:"payload"`
}

// Encodings of line.Payload.
const (
	encJSON   = "json"
	encText   = "text"
	encBase64 = "base64"
)

// formatEvent returns e as a JSON line, ending in '\n'. e's payload is the
// []byte wireCodec decoded, or whatever a local publisher passed (never the
// case in buscat, but handled: it is printed as JSON). It fails only for a
// local payload encoding/json cannot marshal.
func formatEvent(e bus.Event) ([]byte, error) {
	l := line{Topic: e.Topic}
	if m := e.Meta; m != nil {
		l.Source, l.Seq, l.ContentType, l.Headers = m.Source, m.Seq, m.ContentType, m.Headers
		if !m.Time.IsZero() {
			t := m.Time.UTC()
			l.Time = &t
		}
	}
	switch p := e.Payload.(type) {
	case []byte:
		l.Encoding, l.Payload = encodePayload(p, l.ContentType)
	case string:
		l.Encoding, l.Payload = encodePayload([]byte(p), "text/plain")
	default:
		data, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("event on %q: payload %T: %w", e.Topic, p, err)
		}
		l.Encoding, l.Payload = encJSON, data
	}
	// Strings with invalid UTF-8 (topics and headers come from the
	// network) are marshalled with U+FFFD; the payload is valid JSON: this
	// cannot fail.
	out, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("event on %q: %w", e.Topic, err)
	}
	return append(out, '\n'), nil
}

// encodePayload returns how data is printed and the JSON value to print.
//
// The content type decides when it says JSON (and data is valid JSON) or
// text (and data is printable UTF-8). Otherwise, and for messages without a
// content type, the bytes decide: a JSON object or array is JSON, printable
// UTF-8 is text, anything else is base64. A JSON number or string without a
// content type is text: "42" published by redis-cli is more likely text
// than a number.
func encodePayload(data []byte, contentType string) (encoding string, value json.RawMessage) {
	mediaType, _, _ := strings.Cut(contentType, ";")
	mediaType = strings.ToLower(strings.TrimSpace(mediaType))
	isJSON := mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
	if isJSON {
		if v, ok := compact(data); ok {
			return encJSON, v
		}
	} else if !strings.HasPrefix(mediaType, "text/") {
		if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			if v, ok := compact(t); ok {
				return encJSON, v
			}
		}
	}
	if printable(data) {
		s, _ := json.Marshal(string(data)) // valid UTF-8: cannot fail
		return encText, s
	}
	s, _ := json.Marshal(base64.StdEncoding.EncodeToString(data))
	return encBase64, s
}

// compact returns data without insignificant white space, so that it fits
// on one line, and whether data is valid JSON.
func compact(data []byte) (json.RawMessage, bool) {
	if !utf8.Valid(data) {
		// encoding/json would pass invalid UTF-8 inside strings through,
		// and the line would not be valid JSON text.
		return nil, false
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return nil, false
	}
	return b.Bytes(), true
}

// printable reports whether data is valid UTF-8 without control characters
// other than tab, line feed and carriage return: text a terminal shows as
// it is.
func printable(data []byte) bool {
	for len(data) > 0 {
		r, n := utf8.DecodeRune(data)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
		data = data[n:]
	}
	return true
}
