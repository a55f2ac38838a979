package bus

import (
	"errors"
	"strings"

	"github.com/gobwas/glob"
)

// patternKind says where a subscription lives in the index.
type patternKind uint8

const (
	// kindLiteral: no metacharacters; the pattern is a plain topic and
	// lives in the striped literal map.
	kindLiteral patternKind = iota
	// kindTree: every segment is literal, `*` or `**`; the pattern is a
	// path of edges in the wildcard tree.
	kindTree
	// kindGlob: metacharacters inside a segment; the pattern is compiled
	// with gobwas/glob and hung on the tree node of its literal prefix.
	kindGlob
)

// metachars are the characters that make a segment more than a literal.
const metachars = `*?[]{}\`

// hasMeta reports whether s holds any of metachars. strings.ContainsAny
// builds its set of the characters on every call: that was a tenth of a
// Subscribe plus Unsubscribe (root BenchmarkChurn/quiet).
func hasMeta(s string) bool {
	for i := 0; i < len(s); i++ {
		if isMeta[s[i]] {
			return true
		}
	}
	return false
}

// pattern is a parsed subscription pattern.
type pattern struct {
	text string
	kind patternKind
	// segs are, for kindTree, all the segments; for kindGlob, the leading
	// literal segments under which the glob hangs; nil for kindLiteral.
	segs []string
	// glob is the compiled pattern of a kindGlob.
	glob *glob.Pattern
}

// parsePattern checks text against the segment rules and the glob syntax
// and works out where it goes in the index.
//
// The pattern means exactly what gobwas/glob says when compiled with
// glob.Compiler{Separators: []rune{sep}, Globstar: true}; the tree only
// stores it in a form that is faster to match. Splitting on the separator
// before looking at the glob syntax is sound for the leading literal
// segments, since a `{`, `[` or `\` that could make a separator part of a
// group starts a segment that is not literal.
func parsePattern(text string, sep byte) (pattern, error) {
	if err := validate(text, sep, true); err != nil {
		return pattern{}, err
	}
	p := pattern{text: text, kind: kindLiteral}
	if !hasMeta(text) {
		return p, nil
	}
	segs := strings.Split(text, string(sep))
	p.kind = kindTree
	for i, seg := range segs {
		if seg == "*" || seg == "**" || !hasMeta(seg) {
			continue
		}
		p.kind = kindGlob
		p.segs = segs[:i:i]
		break
	}
	if p.kind == kindTree {
		p.segs = segs
		return p, nil
	}
	c := glob.Compiler{Separators: []rune{rune(sep)}, Globstar: true}
	g, err := c.Compile(text)
	if err != nil {
		var se *glob.SyntaxError
		if errors.As(err, &se) {
			return pattern{}, syntaxError(ErrInvalidPattern, text, se.Offset, se.Reason)
		}
		return pattern{}, syntaxError(ErrInvalidPattern, text, 0, err.Error())
	}
	p.glob = g
	return p, nil
}

// CompilePattern checks pattern for a bus whose segments are separated by
// sep and returns a function reporting whether a topic matches it, with the
// exact meaning Subscribe gives the pattern. It returns a [*SyntaxError]
// wrapping [ErrInvalidPattern] for a bad pattern.
//
// It is meant for code that must filter topics the way the bus does, such as
// a bridge narrowing a coarse Redis pattern down to a bus pattern. The
// returned function is safe for concurrent use and does not allocate.
func CompilePattern(pattern string, sep rune) (func(topic string) bool, error) {
	if !validSeparator(sep) {
		return nil, syntaxError(ErrInvalidPattern, pattern, 0, "invalid separator "+string(sep))
	}
	p, err := parsePattern(pattern, byte(sep))
	if err != nil {
		return nil, err
	}
	if p.kind == kindLiteral {
		return func(topic string) bool { return topic == p.text }, nil
	}
	// Tree patterns compile just as well: the glob syntax covers them.
	g := p.glob
	if g == nil {
		c := glob.Compiler{Separators: []rune{sep}, Globstar: true}
		if g, err = c.Compile(pattern); err != nil {
			return nil, syntaxError(ErrInvalidPattern, pattern, 0, err.Error())
		}
	}
	return g.Match, nil
}
