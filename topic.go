package bus

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTopicLen is the longest topic or pattern the bus accepts, in bytes.
// Longer ones are rejected with ErrInvalidTopic or ErrInvalidPattern. The
// limit keeps matching cost bounded and leaves room for a bridge prefix
// within any sane Redis channel name.
const MaxTopicLen = 1024

// DefaultSeparator separates the segments of a topic unless
// [Options.Separator] says otherwise.
const DefaultSeparator = '.'

// isMeta lists the glob metacharacters, which a topic may not contain.
var isMeta = [256]bool{'*': true, '?': true, '[': true, ']': true, '{': true, '}': true, '\\': true}

// validSeparator reports whether r may serve as a separator: an ASCII
// punctuation character that means nothing to the glob syntax.
func validSeparator(r rune) bool {
	if r >= utf8.RuneSelf || !unicode.IsPunct(r) && !unicode.IsSymbol(r) {
		return false
	}
	return !isMeta[r] && r != ',' && r != '!' && r != '-'
}

// ValidateTopic reports whether topic is a valid topic for a bus whose
// segments are separated by sep, returning nil or a [*SyntaxError] wrapping
// [ErrInvalidTopic].
//
// A topic is valid UTF-8 of 1 to [MaxTopicLen] bytes made of non-empty
// segments joined by sep, with no control characters (Unicode category Cc)
// and none of the glob metacharacters * ? [ ] { } \. Any other character,
// spaces included, is allowed.
//
// ValidateTopic does not allocate for a valid topic and is safe for
// concurrent use.
func ValidateTopic(topic string, sep rune) error {
	return validate(topic, byte(sep), false)
}

// validate checks topic or pattern against the segment rules. Patterns may
// hold the glob metacharacters; whether they form a valid glob is for the
// glob compiler to say.
func validate(s string, sep byte, pattern bool) error {
	sentinel := ErrInvalidTopic
	if pattern {
		sentinel = ErrInvalidPattern
	}
	if len(s) == 0 {
		return syntaxError(sentinel, s, 0, "empty")
	}
	if len(s) > MaxTopicLen {
		return syntaxError(sentinel, s, MaxTopicLen, "longer than MaxTopicLen bytes")
	}
	segStart := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == sep:
				if i == segStart {
					return syntaxError(sentinel, s, i, "empty segment")
				}
				segStart = i + 1
			case c < 0x20 || c == 0x7f:
				return syntaxError(sentinel, s, i, "control character")
			case isMeta[c] && !pattern:
				return syntaxError(sentinel, s, i, "glob metacharacter "+string(rune(c))+" in a topic")
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 {
			return syntaxError(sentinel, s, i, "invalid UTF-8")
		}
		if unicode.IsControl(r) {
			return syntaxError(sentinel, s, i, "control character")
		}
		i += w
	}
	if segStart == len(s) {
		return syntaxError(sentinel, s, len(s), "empty segment")
	}
	return nil
}

// nextSegment returns the segment of s starting at i and the start of the
// segment after it, or -1 when it is the last one. It does not allocate.
func nextSegment(s string, i int, sep byte) (seg string, next int) {
	j := strings.IndexByte(s[i:], sep)
	if j < 0 {
		return s[i:], -1
	}
	return s[i : i+j], i + j + 1
}
