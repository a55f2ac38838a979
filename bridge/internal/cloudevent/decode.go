package cloudevent

import (
	"encoding/base64"
	"strconv"
	"time"

	"github.com/busline/bus/bridge/internal/intern"
)

// Strings every imported event of a source repeats, interned: see package
// intern.
var sources, types, ctypes, names intern.Table

// The members Decode knows, as bits: a second one is a duplicate.
const (
	seenSpec = 1 << iota
	seenID
	seenSource
	seenType
	seenTime
	seenCType
	seenData
	seenData64
	seenSeq
	seenEpoch
	seenSig
)

// LooksLike reports whether msg may be a structured-mode CloudEvent: its
// first byte after white space is '{'. It does not validate the rest;
// Decode does.
func LooksLike(msg []byte) bool {
	off := skipSpace(msg, 0)
	return off < len(msg) && msg[off] == '{'
}

// Decode decodes msg, a structured-mode CloudEvent 1.0 in JSON, checking
// it strictly (see the package documentation); the errors wrap
// ErrMalformed and say what is wrong at which byte offset. Data aliases
// msg when the data member is JSON text or a string without escapes.
// Allocations: the id, the extensions map and its strings, decoded data
// (escapes, base64); the source, type and content type are interned. It
// never panics and is safe for concurrent use.
func Decode(msg []byte) (Event, error) {
	var ev Event
	off := skipSpace(msg, 0)
	if off >= len(msg) || msg[off] != '{' {
		return ev, malformed(off, "not a JSON object")
	}
	var (
		seen       uint
		data       []byte // the data member's JSON text
		dataString []byte // its content, if a string (escapes undecoded)
		dataEsc    bool
		data64     []byte
	)
	off = skipSpace(msg, off+1)
	if off < len(msg) && msg[off] == '}' {
		return ev, malformed(off, "missing specversion")
	}
	for {
		if off >= len(msg) || msg[off] != '"' {
			return ev, malformed(off, "expected a member name")
		}
		nameOff := off
		end, esc, err := scanString(msg, off)
		if err != nil {
			return ev, err
		}
		name := msg[off+1 : end-1]
		if esc {
			name = unescape(name)
		}
		if off = skipSpace(msg, end); off >= len(msg) || msg[off] != ':' {
			return ev, malformed(off, "expected ':'")
		}
		off = skipSpace(msg, off+1)
		valOff := off
		if off, err = skipValue(msg, off, 0); err != nil {
			return ev, err
		}
		val := msg[valOff:off]
		bit := uint(0)
		switch string(name) {
		case "specversion":
			bit = seenSpec
			s, ok := stringValue(val)
			if !ok || string(s) != SpecVersion {
				return ev, malformed(valOff, "specversion %.20s, want \"1.0\"", val)
			}
		case "id":
			bit = seenID
			s, ok := nonEmpty(val)
			if !ok {
				return ev, malformed(valOff, "id must be a non-empty string")
			}
			ev.ID = string(s)
		case "source":
			bit = seenSource
			s, ok := nonEmpty(val)
			if !ok || !ValidSource(string(s)) {
				return ev, malformed(valOff, "source must be a non-empty URI-reference")
			}
			ev.Source = sources.String(s)
		case "type":
			bit = seenType
			s, ok := nonEmpty(val)
			if !ok {
				return ev, malformed(valOff, "type must be a non-empty string")
			}
			ev.Type = types.String(s)
		case "time":
			bit = seenTime
			if isNull(val) {
				break
			}
			s, ok := nonEmpty(val)
			if !ok {
				return ev, malformed(valOff, "time must be an RFC 3339 string")
			}
			if ev.Time, err = time.Parse(time.RFC3339Nano, string(s)); err != nil {
				return ev, malformed(valOff, "time %.40q is not RFC 3339", s)
			}
		case "datacontenttype":
			bit = seenCType
			if isNull(val) {
				break
			}
			s, ok := nonEmpty(val)
			if !ok {
				return ev, malformed(valOff, "datacontenttype must be a non-empty string")
			}
			ev.DataContentType = ctypes.String(s)
		case "data":
			bit = seenData
			if !isNull(val) {
				data = val
				if val[0] == '"' {
					dataString = val[1 : len(val)-1]
					_, dataEsc, _ = scanString(val, 0)
				}
			}
		case "data_base64":
			bit = seenData64
			if isNull(val) {
				break
			}
			s, ok := stringValue(val)
			if !ok {
				return ev, malformed(valOff, "data_base64 must be a string")
			}
			data64 = s
		case SeqAttribute:
			bit = seenSeq
			if isNull(val) {
				break
			}
			s, ok := stringValue(val)
			n, err := strconv.ParseUint(string(s), 10, 64)
			if !ok || err != nil || n == 0 || s[0] == '0' || s[0] == '+' {
				return ev, malformed(valOff, "%s must be a decimal string, 1..2^64-1", SeqAttribute)
			}
			ev.Seq = n
		case EpochAttribute:
			bit = seenEpoch
			if isNull(val) {
				break
			}
			s, ok := stringValue(val)
			if ev.Epoch, ok = parseHex16(s, ok); !ok {
				return ev, malformed(valOff, "%s must be a string of 16 lowercase hex digits", EpochAttribute)
			}
		case SigAttribute:
			// Checked by Verify, if the receiver has a key; not an
			// extension of the event.
			bit = seenSig
			if _, ok := stringValue(val); !ok && !isNull(val) {
				return ev, malformed(valOff, "%s must be a string", SigAttribute)
			}
		default:
			if err := ev.extension(name, val, nameOff, valOff); err != nil {
				return ev, err
			}
		}
		if bit != 0 {
			if seen&bit != 0 {
				return ev, malformed(nameOff, "duplicate member %q", name)
			}
			seen |= bit
		}
		off = skipSpace(msg, off)
		if off < len(msg) && msg[off] == ',' {
			off = skipSpace(msg, off+1)
			continue
		}
		if off >= len(msg) || msg[off] != '}' {
			return ev, malformed(off, "expected ',' or '}'")
		}
		off++
		break
	}
	if off = skipSpace(msg, off); off != len(msg) {
		return ev, malformed(off, "data after the event")
	}
	for _, req := range []struct {
		bit  uint
		name string
	}{{seenSpec, "specversion"}, {seenID, "id"}, {seenSource, "source"}, {seenType, "type"}} {
		if seen&req.bit == 0 {
			return ev, malformed(len(msg), "missing %s", req.name)
		}
	}
	switch {
	case data != nil && data64 != nil:
		return ev, malformed(0, "both data and data_base64")
	case data64 != nil:
		d := make([]byte, base64.StdEncoding.DecodedLen(len(data64)))
		n, err := base64.StdEncoding.Decode(d, data64)
		if err != nil {
			return ev, malformed(0, "data_base64: %v", err)
		}
		if n > 0 {
			ev.Data = d[:n:n]
		}
	case dataString != nil && !IsJSON(ev.DataContentType):
		// A string of a non-JSON type is the data itself (text/plain,
		// text/xml...).
		if dataEsc {
			dataString = unescape(dataString)
		}
		if len(dataString) > 0 {
			ev.Data = dataString[:len(dataString):len(dataString)]
		}
	case data != nil:
		ev.Data = data[:len(data):len(data)]
	}
	return ev, nil
}

// extension records the extension name: val of ev. Null means absent;
// strings, numbers and booleans are kept as strings; objects and arrays
// are not in the CloudEvents type system.
func (ev *Event) extension(name, val []byte, nameOff, valOff int) error {
	if !ValidName(string(name)) {
		return malformed(nameOff, "attribute name %.40q is not lowercase letters and digits", name)
	}
	if isNull(val) {
		return nil
	}
	var s string
	switch val[0] {
	case '"':
		v, _ := stringValue(val)
		if len(v) == 0 && (string(name) == "subject" || string(name) == "dataschema") {
			return malformed(valOff, "%s must not be empty", name)
		}
		s = string(v)
	case '{', '[':
		return malformed(valOff, "extension %q is an object or array", name)
	default: // a number or a boolean, validated by skipValue
		s = string(val)
	}
	if ev.Extensions == nil {
		ev.Extensions = make(map[string]string, 4)
	}
	if _, dup := ev.Extensions[string(name)]; dup {
		return malformed(nameOff, "duplicate member %q", name)
	}
	ev.Extensions[names.String(name)] = s
	return nil
}

// parseHex16 returns the value of s, if ok and s is 16 lowercase hex
// digits.
func parseHex16(s []byte, ok bool) (uint64, bool) {
	if !ok || len(s) != 16 {
		return 0, false
	}
	var v uint64
	for _, c := range s {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func isNull(val []byte) bool { return string(val) == "null" }

// stringValue returns the content of val, a validated JSON value, if it is
// a string, its escapes decoded.
func stringValue(val []byte) ([]byte, bool) {
	if val[0] != '"' {
		return nil, false
	}
	s := val[1 : len(val)-1]
	for _, c := range s {
		if c == '\\' {
			return unescape(s), true
		}
	}
	return s, true
}

// nonEmpty is stringValue for a string that must not be empty.
func nonEmpty(val []byte) ([]byte, bool) {
	s, ok := stringValue(val)
	return s, ok && len(s) > 0
}
