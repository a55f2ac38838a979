package bus

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gobwas/glob"
)

// reference is the brute-force answer: every valid pattern compiled with
// gobwas/glob, the way the package documentation defines matching, and
// scanned one by one.
type reference struct {
	sep   rune
	globs []*glob.Pattern
}

func (r *reference) add(t testing.TB, p string) {
	c := glob.Compiler{Separators: []rune{r.sep}, Globstar: true}
	g, err := c.Compile(p)
	if err != nil {
		t.Fatalf("reference compile %q: %v", p, err)
	}
	r.globs = append(r.globs, g)
}

// matches returns the indexes of the patterns matching topic.
func (r *reference) matches(topic string) []int {
	var out []int
	for i, g := range r.globs {
		if g.Match(topic) {
			out = append(out, i)
		}
	}
	return out
}

// recorder subscribes patterns and records which of them got an event.
type recorder struct {
	b    *Bus
	subs []*Subscription
	got  []int
}

func (rc *recorder) add(t testing.TB, p string) error {
	i := len(rc.subs)
	s, err := rc.b.Subscribe(p, func(ctx context.Context, e Event) { rc.got = append(rc.got, i) })
	if err != nil {
		return err
	}
	rc.subs = append(rc.subs, s)
	return nil
}

func (rc *recorder) publish(t testing.TB, topic string) []int {
	rc.got = rc.got[:0]
	if err := rc.b.Publish(context.Background(), topic, nil); err != nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
	return slices.Clone(rc.got)
}

var (
	patternSegs = []string{"a", "b", "ab", "*", "**", "a*", "*b", "?", "[ab]", "[!a]", "{a,b}", "{a.b,c}", "a**", "**b", "\\a", "[a-c]?", "{**.,}b"}
	topicSegs   = []string{"a", "b", "ab", "ba", "c", "abc", "x"}
)

func randomJoin(r *rand.Rand, parts []string, max int, sep string) string {
	n := 1 + r.IntN(max)
	s := make([]string, n)
	for i := range s {
		s[i] = parts[r.IntN(len(parts))]
	}
	return strings.Join(s, sep)
}

// TestMatchAgainstReference checks that the index gives exactly the answer
// of a brute-force scan of compiled globs, over random patterns and topics,
// with and without the match cache, for two separators.
func TestMatchAgainstReference(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sep   rune
		cache int
	}{
		{"dot", '.', 0},
		{"dot-nocache", '.', -1},
		{"slash-tinycache", '/', 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.sep)))
			sep := string(tc.sep)
			for round := 0; round < 40; round++ {
				ref := &reference{sep: tc.sep}
				rc := &recorder{b: New(&Options{Separator: tc.sep, MatchCacheSize: tc.cache})}
				for range 30 {
					p := strings.ReplaceAll(randomJoin(r, patternSegs, 5, "."), ".", sep)
					if err := rc.add(t, p); err != nil {
						continue
					}
					ref.add(t, p)
				}
				for range 200 {
					topic := randomJoin(r, topicSegs, 6, sep)
					want := ref.matches(topic)
					if got := rc.publish(t, topic); !slices.Equal(got, want) {
						t.Fatalf("topic %q: got %v, want %v; patterns %v", topic, names(rc, got), names(rc, want), patternsOf(rc))
					}
				}
				// Unsubscribe half and check again: removal must prune
				// exactly what it should.
				for i := 0; i < len(rc.subs); i += 2 {
					rc.subs[i].Unsubscribe()
					ref.globs[i] = glob.MustCompile("\\*never") // matches no valid topic
				}
				for range 100 {
					topic := randomJoin(r, topicSegs, 6, sep)
					want := ref.matches(topic)
					if got := rc.publish(t, topic); !slices.Equal(got, want) {
						t.Fatalf("after unsubscribe, topic %q: got %v, want %v", topic, names(rc, got), names(rc, want))
					}
				}
			}
		})
	}
}

func names(rc *recorder, idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, rc.subs[i].Pattern())
	}
	return out
}

func patternsOf(rc *recorder) []string {
	return names(rc, func() []int {
		var all []int
		for i := range rc.subs {
			all = append(all, i)
		}
		return all
	}())
}

// FuzzMatch compares the bus with gobwas/glob on one pattern and one topic,
// skipping invalid input.
func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"a.b", "a.b"}, {"a.*", "a.b"}, {"a.*", "a.b.c"}, {"a.**", "a"}, {"a.**", "a.b.c"},
		{"**.b", "b"}, {"a.**.b", "a.b"}, {"a.**.b", "a.x.y.b"}, {"**.**", "a"}, {"a*.b", "ab.b"},
		{"{a.b,c}.d", "a.b.d"}, {"[!a].x", "b.x"}, {"a\\.b", "a.b"}, {"?", "é"}, {"a.b*", "a.b"},
		{"**b", "a.b"}, {"*.**.*", "a.b"}, {"{**.,}b", "a.b"},
		{"orders", "orders.eu"}, {"orders.eu", "orders"}, {"a.b", "a.bc"}, // a literal is no prefix
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, topic string) {
		if ValidateTopic(topic, '.') != nil {
			return
		}
		b := New(nil)
		var got bool
		if _, err := b.Subscribe(pat, func(context.Context, Event) { got = true }); err != nil {
			return
		}
		// A second subscription with the same shape exercises dedup and
		// shared nodes.
		if _, err := b.Subscribe(pat, func(context.Context, Event) {}); err != nil {
			t.Fatalf("second subscribe of %q: %v", pat, err)
		}
		if err := b.Publish(context.Background(), topic, nil); err != nil {
			t.Fatalf("publish %q: %v", topic, err)
		}
		c := glob.Compiler{Separators: []rune{'.'}, Globstar: true}
		g, err := c.Compile(pat)
		if err != nil {
			t.Fatalf("bus accepted %q, glob rejects it: %v", pat, err)
		}
		if want := g.Match(topic); got != want {
			t.Fatalf("pattern %q topic %q: bus %v, glob %v", pat, topic, got, want)
		}
		match, err := CompilePattern(pat, '.')
		if err != nil {
			t.Fatalf("CompilePattern(%q): %v", pat, err)
		}
		if m := match(topic); m != got {
			t.Fatalf("CompilePattern(%q)(%q) = %v, the bus says %v", pat, topic, m, got)
		}
	})
}

// TestHasMeta: hasMeta, which reads isMeta, agrees with metachars, for
// every byte and for strings with multi-byte characters.
func TestHasMeta(t *testing.T) {
	for c := range 256 {
		s := string([]byte{'a', byte(c), 'b'})
		if got, want := hasMeta(s), strings.ContainsAny(s, metachars); got != want {
			t.Errorf("hasMeta(%q) = %v, want %v", s, got, want)
		}
	}
	for _, s := range []string{"", "orders.créé", "日本.*", "a.{b,c}", `a\.b`, "été"} {
		if got, want := hasMeta(s), strings.ContainsAny(s, metachars); got != want {
			t.Errorf("hasMeta(%q) = %v, want %v", s, got, want)
		}
	}
}
