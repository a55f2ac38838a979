package cloudevent

import (
	"fmt"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON scanner: it validates JSON text (RFC 8259, strings of valid
// UTF-8) without allocating, and locates values in it, so that Decode
// needs neither reflection nor a copy of the data member.

// maxDepth bounds the nesting of arrays and objects in data, so that a
// hostile message cannot exhaust the stack.
const maxDepth = 1000

// malformed returns an error wrapping ErrMalformed that says what is wrong
// at byte offset off.
func malformed(off int, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, off, fmt.Sprintf(format, args...))
}

func skipSpace(b []byte, off int) int {
	for off < len(b) {
		switch b[off] {
		case ' ', '\t', '\n', '\r':
			off++
		default:
			return off
		}
	}
	return off
}

// validJSON reports whether b is one JSON value, with optional white space
// around it.
func validJSON(b []byte) bool {
	off, err := skipValue(b, skipSpace(b, 0), 0)
	return err == nil && skipSpace(b, off) == len(b)
}

// skipValue validates the JSON value at b[off:] (no white space before it)
// and returns the offset after it.
func skipValue(b []byte, off, depth int) (int, error) {
	if off >= len(b) {
		return off, malformed(off, "truncated before a value")
	}
	switch c := b[off]; {
	case c == '"':
		end, _, err := scanString(b, off)
		return end, err
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return off, malformed(off, "nested deeper than %d", maxDepth)
		}
		return skipContainer(b, off, depth+1)
	case c == 't':
		return skipLiteral(b, off, "true")
	case c == 'f':
		return skipLiteral(b, off, "false")
	case c == 'n':
		return skipLiteral(b, off, "null")
	case c == '-' || '0' <= c && c <= '9':
		return skipNumber(b, off)
	default:
		return off, malformed(off, "unexpected %q", c)
	}
}

// skipContainer validates the object or array at b[off:].
func skipContainer(b []byte, off, depth int) (int, error) {
	object := b[off] == '{'
	closing := byte(']')
	if object {
		closing = '}'
	}
	off = skipSpace(b, off+1)
	if off < len(b) && b[off] == closing {
		return off + 1, nil
	}
	for {
		var err error
		if object {
			if off >= len(b) || b[off] != '"' {
				return off, malformed(off, "expected a member name")
			}
			if off, _, err = scanString(b, off); err != nil {
				return off, err
			}
			if off = skipSpace(b, off); off >= len(b) || b[off] != ':' {
				return off, malformed(off, "expected ':'")
			}
			off = skipSpace(b, off+1)
		}
		if off, err = skipValue(b, off, depth); err != nil {
			return off, err
		}
		off = skipSpace(b, off)
		switch {
		case off >= len(b):
			return off, malformed(off, "truncated")
		case b[off] == ',':
			off = skipSpace(b, off+1)
		case b[off] == closing:
			return off + 1, nil
		default:
			return off, malformed(off, "expected ',' or %q", closing)
		}
	}
}

func skipLiteral(b []byte, off int, lit string) (int, error) {
	if len(b)-off < len(lit) || string(b[off:off+len(lit)]) != lit {
		return off, malformed(off, "invalid literal")
	}
	return off + len(lit), nil
}

// skipNumber validates the number at b[off:]: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, off int) (int, error) {
	start := off
	if b[off] == '-' {
		off++
	}
	digits := func() bool {
		n := off
		for off < len(b) && '0' <= b[off] && b[off] <= '9' {
			off++
		}
		return off > n
	}
	switch {
	case off < len(b) && b[off] == '0':
		off++
	case !digits():
		return start, malformed(start, "invalid number")
	}
	if off < len(b) && b[off] == '.' {
		off++
		if !digits() {
			return start, malformed(start, "invalid number")
		}
	}
	if off < len(b) && (b[off] == 'e' || b[off] == 'E') {
		off++
		if off < len(b) && (b[off] == '+' || b[off] == '-') {
			off++
		}
		if !digits() {
			return start, malformed(start, "invalid number")
		}
	}
	return off, nil
}

// scanString validates the string at b[off:] (b[off] is its opening
// quote) and returns the offset after its closing quote, and whether it
// has escapes.
func scanString(b []byte, off int) (end int, escaped bool, err error) {
	start := off
	off++
	for off < len(b) {
		c := b[off]
		switch {
		case c == '"':
			return off + 1, escaped, nil
		case c == '\\':
			escaped = true
			if off+1 >= len(b) {
				return off, escaped, malformed(off, "truncated escape")
			}
			switch b[off+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				off += 2
			case 'u':
				if len(b)-off < 6 || hex4(b[off+2:off+6]) < 0 {
					return off, escaped, malformed(off, "invalid \\u escape")
				}
				off += 6
			default:
				return off, escaped, malformed(off, "invalid escape")
			}
		case c < 0x20:
			return off, escaped, malformed(off, "control character in a string")
		case c < utf8.RuneSelf:
			off++
		default:
			r, n := utf8.DecodeRune(b[off:])
			if r == utf8.RuneError && n == 1 {
				return off, escaped, malformed(off, "invalid UTF-8 in a string")
			}
			off += n
		}
	}
	return start, escaped, malformed(start, "unterminated string")
}

// hex4 returns the value of 4 hex digits, or -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unescape returns the content of the validated string body s (without
// its quotes) with its escapes decoded. As encoding/json does, a lone or
// mismatched surrogate becomes U+FFFD.
func unescape(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(s[i+2:])); d != unicode.ReplacementChar {
						i += 6
						out = utf8.AppendRune(out, d)
						continue
					}
				}
				r = unicode.ReplacementChar
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, s[i+1])
		}
		i += 2
	}
	return out
}
