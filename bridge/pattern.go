package bridge

import (
	"strings"
	"unicode/utf8"

	bus "github.com/busline/bus"
)

// RedisPattern returns what the bridge subscribes to on Redis to import the
// bus pattern with the given channel prefix, on a bus whose separator is
// sep.
//
// For a plain topic it returns the channel prefix+pattern and isPattern
// false: the bridge uses SUBSCRIBE. Otherwise it returns a Redis glob for
// PSUBSCRIBE that matches every channel prefix+topic whose topic the bus
// pattern matches, and isPattern true. The glob may match more, since Redis
// globs cannot say everything bus patterns say: Redis's `*` crosses
// separators, Redis has no `{a,b}`, and it matches bytes where the bus
// matches runes. So literal text is kept (with Redis's metacharacters
// escaped), `*`, `**`, `?`, a group `{...}` and a class holding a non-ASCII
// or negated set widen to `*`, and an ASCII class widens to `?`. The bridge
// filters what arrives with the bus's own matcher. New reports each
// import route whose pattern had to be widened beyond `*` and `**` (a
// group, a class or `?`) to Options.OnError, wrapping ErrPatternWidened.
//
// The glob is also what a Redis ACL user needs verbatim among its channel
// rules: Redis checks PSUBSCRIBE patterns literally against them (see the
// package documentation).
//
// RedisPattern returns a *bus.SyntaxError wrapping bus.ErrInvalidPattern for
// a bad pattern. It is safe for concurrent use.
func RedisPattern(prefix, pattern string, sep rune) (name string, isPattern bool, err error) {
	if _, err := bus.CompilePattern(pattern, sep); err != nil {
		return "", false, err
	}
	if !strings.ContainsAny(pattern, `*?[]{}\`) {
		return prefix + pattern, false, nil
	}
	glob, _ := redisGlob(prefix, pattern)
	return glob, true, nil
}

// redisGlob translates a valid bus pattern into a Redis glob matching a
// superset of its topics, behind the escaped prefix. widened reports
// whether the glob lost some of the pattern: a `?`, a class or a group
// widened to `*` or `?`. A bus `*` or `**` becoming Redis's `*`, which
// crosses separators, does not count: it is the glob's plain reading.
func redisGlob(prefix, pattern string) (glob string, widened bool) {
	var g globBuilder
	g.b.Grow(len(prefix) + len(pattern) + 4)
	for i := 0; i < len(prefix); i++ {
		g.literal(prefix[i])
	}
	for i := 0; i < len(pattern); {
		switch c := pattern[i]; c {
		case '\\':
			// An escaped rune stands for itself.
			if i+1 >= len(pattern) {
				g.literal(c) // unreachable for a valid pattern
				i++
				continue
			}
			_, n := utf8.DecodeRuneInString(pattern[i+1:])
			for k := i + 1; k < i+1+n; k++ {
				g.literal(pattern[k])
			}
			i += 1 + n
		case '*':
			g.star()
			i++
		case '?':
			// `?` is one rune, which may be several bytes: widen it.
			g.star()
			widened = true
			i++
		case '[':
			end, ascii, negated := scanClass(pattern, i)
			if ascii && !negated {
				g.any()
			} else {
				g.star()
			}
			widened = true
			i = end
		case '{':
			g.star()
			widened = true
			i = scanGroup(pattern, i)
		default:
			g.literal(c)
			i++
		}
	}
	return g.b.String(), widened
}

// globBuilder writes a Redis glob, merging runs of `*`.
type globBuilder struct {
	b        strings.Builder
	lastStar bool
}

func (g *globBuilder) literal(c byte) {
	switch c {
	case '*', '?', '[', ']', '\\':
		g.b.WriteByte('\\')
	}
	g.b.WriteByte(c)
	g.lastStar = false
}

func (g *globBuilder) star() {
	if !g.lastStar {
		g.b.WriteByte('*')
		g.lastStar = true
	}
}

func (g *globBuilder) any() {
	g.b.WriteByte('?')
	g.lastStar = false
}

// scanClass returns the index after the class that starts at pattern[i]
// ('['), whether its members are all ASCII, and whether it is negated.
func scanClass(pattern string, i int) (end int, ascii, negated bool) {
	ascii = true
	j := i + 1
	if j < len(pattern) && pattern[j] == '!' {
		negated = true
		j++
	}
	for ; j < len(pattern); j++ {
		c := pattern[j]
		if c == ']' {
			return j + 1, ascii, negated
		}
		if c == '\\' && j+1 < len(pattern) {
			j++
			c = pattern[j]
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	return len(pattern), ascii, negated
}

// scanGroup returns the index after the group that starts at pattern[i]
// ('{'), honouring nested groups, classes and escapes.
func scanGroup(pattern string, i int) int {
	depth := 0
	for j := i; j < len(pattern); j++ {
		switch pattern[j] {
		case '\\':
			j++
		case '[':
			end, _, _ := scanClass(pattern, j)
			j = end - 1
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(pattern)
}
