package bus

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestValidateTopic(t *testing.T) {
	for _, tc := range []struct {
		topic  string
		sep    rune
		offset int // -1: valid
		reason string
	}{
		{"a", '.', -1, ""},
		{"orders.created", '.', -1, ""},
		{"a b.c-d_e:f", '.', -1, ""},
		{"café.naïve.日本", '.', -1, ""},
		{"a/b/c", '/', -1, ""},
		{"a.b", '/', -1, ""}, // the dot is an ordinary character then
		{"", '.', 0, "empty"},
		{".a", '.', 0, "empty segment"},
		{"a.", '.', 2, "empty segment"},
		{"a..b", '.', 2, "empty segment"},
		{".", '.', 0, "empty segment"},
		{"a\tb", '.', 1, "control character"},
		{"a\x7fb", '.', 1, "control character"},
		{"a\u0085b", '.', 1, "control character"},
		{"a\xffb", '.', 1, "invalid UTF-8"},
		{"a.*", '.', 2, "metacharacter"},
		{"a?", '.', 1, "metacharacter"},
		{"[a]", '.', 0, "metacharacter"},
		{"a{b", '.', 1, "metacharacter"},
		{"a}", '.', 1, "metacharacter"},
		{"a]", '.', 1, "metacharacter"},
		{"a\\b", '.', 1, "metacharacter"},
		{strings.Repeat("a", MaxTopicLen), '.', -1, ""},
		{strings.Repeat("a", MaxTopicLen+1), '.', MaxTopicLen, "longer"},
	} {
		err := ValidateTopic(tc.topic, tc.sep)
		if tc.offset < 0 {
			if err != nil {
				t.Errorf("ValidateTopic(%q) = %v, want nil", tc.topic, err)
			}
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) || !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want a *SyntaxError wrapping ErrInvalidTopic", tc.topic, err)
			continue
		}
		if se.Offset != tc.offset || !strings.Contains(se.Reason, tc.reason) {
			t.Errorf("ValidateTopic(%q): offset %d reason %q, want offset %d reason containing %q", tc.topic, se.Offset, se.Reason, tc.offset, tc.reason)
		}
	}
}

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		kind    patternKind
		segs    []string
		offset  int // -1: valid
	}{
		{"a.b", kindLiteral, nil, -1},
		{"a.*", kindTree, []string{"a", "*"}, -1},
		{"**", kindTree, []string{"**"}, -1},
		{"a.**.b", kindTree, []string{"a", "**", "b"}, -1},
		{"a.b*.c", kindGlob, []string{"a"}, -1},
		{"{a,b}.c", kindGlob, []string{}, -1},
		{"x.y.{a.b,c}", kindGlob, []string{"x", "y"}, -1},
		{"a\\.b", kindGlob, []string{}, -1},
		{"a.[!x]", kindGlob, []string{"a"}, -1},
		{"a..*", 0, nil, 2},
		{"", 0, nil, 0},
		{"a.{b", 0, nil, 4},
		{"a.[b", 0, nil, 4},
		{"a\\", 0, nil, 2},
		{"a.\x01", 0, nil, 2},
	} {
		p, err := parsePattern(tc.pattern, '.')
		if tc.offset >= 0 {
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalidPattern) {
				t.Errorf("parsePattern(%q) = %v, want a *SyntaxError wrapping ErrInvalidPattern", tc.pattern, err)
			} else if se.Offset != tc.offset {
				t.Errorf("parsePattern(%q): offset %d, want %d (%v)", tc.pattern, se.Offset, tc.offset, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePattern(%q) = %v", tc.pattern, err)
			continue
		}
		if p.kind != tc.kind || strings.Join(p.segs, "|") != strings.Join(tc.segs, "|") {
			t.Errorf("parsePattern(%q) = kind %d segs %q, want kind %d segs %q", tc.pattern, p.kind, p.segs, tc.kind, tc.segs)
		}
	}
}

// referenceValid is the topic rules written the slow, obvious way.
func referenceValid(s string, sep rune) bool {
	if s == "" || len(s) > MaxTopicLen || !utf8.ValidString(s) {
		return false
	}
	for _, seg := range strings.Split(s, string(sep)) {
		if seg == "" {
			return false
		}
	}
	for _, r := range s {
		if unicode.IsControl(r) || strings.ContainsRune(metachars, r) {
			return false
		}
	}
	return true
}

func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{"a", "a.b", "a..b", ".", "a\x00", "é.ü", "a*", "\xff", "a\u0085"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, sep := range []rune{'.', '/', ':'} {
			err := ValidateTopic(s, sep)
			if want := referenceValid(s, sep); (err == nil) != want {
				t.Fatalf("ValidateTopic(%q, %q) = %v, reference says valid=%v", s, sep, err, want)
			}
			if err != nil && !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("error %v does not wrap ErrInvalidTopic", err)
			}
		}
	})
}

func TestValidSeparator(t *testing.T) {
	for _, tc := range []struct {
		sep  rune
		want bool
	}{
		{'.', true}, {'/', true}, {':', true}, {'|', true}, {'_', true},
		{'*', false}, {'?', false}, {'{', false}, {'\\', false}, {',', false}, {'!', false}, {'-', false},
		{'a', false}, {'1', false}, {' ', false}, {'\n', false}, {'·', false},
	} {
		if got := validSeparator(tc.sep); got != tc.want {
			t.Errorf("validSeparator(%q) = %v, want %v", tc.sep, got, tc.want)
		}
	}
}
