package bridge_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// redisMatch is a port of Redis 7.0's stringmatchlen (util.c) without
// nocase, restricted to what RedisPattern produces: literal bytes, `\`
// escapes, `*` and `?`. It is the reference the translation is checked
// against; TestRedisMatchAgreesWithRedis checks it against a real server.
func redisMatch(pattern, s string) bool {
	for len(pattern) > 0 && len(s) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 1 && pattern[1] == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for len(s) > 0 {
				if redisMatch(pattern[1:], s) {
					return true
				}
				s = s[1:]
			}
			return false
		case '?':
			s = s[1:]
		case '[':
			panic("redisMatch: character classes are not supported by this reference")
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if pattern[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		pattern = pattern[1:]
		if len(s) == 0 {
			for len(pattern) > 0 && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			break
		}
	}
	return len(pattern) == 0 && len(s) == 0
}

func TestRedisPattern(t *testing.T) {
	for _, c := range []struct {
		prefix, pattern string
		want            string
		isPattern       bool
	}{
		{"app:", "orders.created", "app:orders.created", false},
		{"app:", "orders.*", `app:orders.*`, true},
		{"app:", "orders.**", `app:orders.*`, true},
		{"app:", "**", `app:*`, true},
		{"app:", "*.created", `app:*.created`, true},
		{"app:", "orders.?", `app:orders.*`, true},                     // one rune may be several bytes
		{"app:", "orders.[abc]x", `app:orders.?x`, true},               // ASCII class: one byte
		{"app:", "orders.[!abc]", `app:orders.*`, true},                // negated: any rune
		{"app:", "orders.[é]", `app:orders.*`, true},                   // non-ASCII member
		{"app:", "orders.{eu,us}.paid", `app:orders.*.paid`, true},     // Redis has no groups
		{"app:", "orders.{eu,{a,b}}*.paid", `app:orders.*.paid`, true}, // nested, merged stars
		{"app:", `orders.\*`, `app:orders.\*`, true},                   // escaped star stays literal
		{"a*b[c]?", "x.*", `a\*b\[c\]\?x.*`, true},                     // prefix metacharacters escaped
		{"", "x", "x", false},
	} {
		got, isPattern, err := bridge.RedisPattern(c.prefix, c.pattern, '.')
		if err != nil {
			t.Errorf("RedisPattern(%q, %q): %v", c.prefix, c.pattern, err)
			continue
		}
		if got != c.want || isPattern != c.isPattern {
			t.Errorf("RedisPattern(%q, %q) = %q, %v; want %q, %v", c.prefix, c.pattern, got, isPattern, c.want, c.isPattern)
		}
	}
	if _, _, err := bridge.RedisPattern("app:", "orders.[", '.'); err == nil {
		t.Error("RedisPattern accepted an unterminated class")
	}
}

// TestRedisPatternSuperset checks on a table of patterns and topics that a
// topic the bus pattern matches is always matched by the Redis glob, and
// that the glob is not needlessly wide where Redis can say the same.
func TestRedisPatternSuperset(t *testing.T) {
	for _, c := range []struct {
		pattern  string
		match    []string // the bus matches these: the glob must too
		globOnly []string // the bus does not, the glob does (widening)
		neither  []string
	}{
		{"orders.*", []string{"orders.a", "orders.é"}, []string{"orders.a.b"}, []string{"order.a", "Orders.a"}},
		{"orders.?", []string{"orders.a", "orders.é"}, []string{"orders.ab"}, []string{"orders"}},
		{"a.[xy]", []string{"a.x", "a.y"}, []string{"a.z"}, []string{"a.xx", "b.x"}},
		{"a.{b,c}.d", []string{"a.b.d", "a.c.d"}, []string{"a.e.d", "a.b.b.d"}, []string{"a.b.e"}},
		{"**.end", []string{"x.end", "x.y.end"}, nil, []string{"x.ends", "xend"}},
	} {
		glob, _, err := bridge.RedisPattern("p:", c.pattern, '.')
		if err != nil {
			t.Fatal(err)
		}
		match, err := bus.CompilePattern(c.pattern, '.')
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range c.match {
			if !match(topic) || !redisMatch(glob, "p:"+topic) {
				t.Errorf("%q (glob %q) and %q: bus %v, redis %v; want both", c.pattern, glob, topic, match(topic), redisMatch(glob, "p:"+topic))
			}
		}
		for _, topic := range c.globOnly {
			if match(topic) || !redisMatch(glob, "p:"+topic) {
				t.Errorf("%q (glob %q) and %q: bus %v, redis %v; want glob only", c.pattern, glob, topic, match(topic), redisMatch(glob, "p:"+topic))
			}
		}
		for _, topic := range c.neither {
			if match(topic) || redisMatch(glob, "p:"+topic) {
				t.Errorf("%q (glob %q) and %q: bus %v, redis %v; want neither", c.pattern, glob, topic, match(topic), redisMatch(glob, "p:"+topic))
			}
		}
	}
}

// TestRedisMatchAgreesWithRedis checks the reference matcher against a
// real Redis, whose KEYS command matches with the same function as
// PSUBSCRIBE.
func TestRedisMatchAgreesWithRedis(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	ctx := context.Background()
	keys := []string{"app:orders.a", "app:orders.a.b", "app:orders.é", "app:orders.", "app:*", `app:\`, "app:?x", "app:ax", "app:orders.*"}
	for _, k := range keys {
		if err := rdb.Set(ctx, k, 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, pattern := range []string{"orders.*", "**", "orders.?", "orders.[ab]", `orders.\*`, "{a,b}x", "[?]x", "orders.{é,x}"} {
		glob, _, err := bridge.RedisPattern("app:", pattern, '.')
		if err != nil {
			t.Fatal(err)
		}
		got, err := rdb.Keys(ctx, glob).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if want := redisMatch(glob, k); want != contains(got, k) {
				t.Errorf("glob %q, key %q: reference says %v, Redis says %v", glob, k, want, !want)
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// FuzzRedisPattern checks that the Redis glob of every valid bus pattern
// matches every valid topic the bus pattern matches, with any prefix.
func FuzzRedisPattern(f *testing.F) {
	for _, s := range [][3]string{
		{"app:", "orders.*", "orders.created"},
		{"app:", "orders.**", "orders.a.b"},
		{"", "a.?.c", "a.é.c"},
		{"x*", "a.[!b].c", "a.日.c"},
		{"[p]", "a.{b,c*,d.e}.f", "a.d.e.f"},
		{`\`, `a.\{b`, "a.b"},
		{"app:", "*.x.[a-c]", "q.x.b"},
		{"app:", "a.{b,[xy]}", "a.y"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, prefix, pattern, topic string) {
		if !utf8.ValidString(prefix) || strings.ContainsRune(prefix, 0) {
			return
		}
		match, err := bus.CompilePattern(pattern, '.')
		if err != nil {
			return
		}
		if bus.ValidateTopic(topic, '.') != nil {
			return
		}
		glob, isPattern, err := bridge.RedisPattern(prefix, pattern, '.')
		if err != nil {
			t.Fatalf("RedisPattern rejected %q that CompilePattern accepts: %v", pattern, err)
		}
		if !isPattern {
			if glob != prefix+pattern {
				t.Fatalf("literal %q gave channel %q", pattern, glob)
			}
			return
		}
		for i := 0; i < len(glob); i++ {
			if glob[i] == '\\' {
				i++
				continue
			}
			if glob[i] == '[' || glob[i] == ']' {
				t.Fatalf("glob %q of %q has an unescaped %q", glob, pattern, glob[i])
			}
		}
		if match(topic) && !redisMatch(glob, prefix+topic) {
			t.Fatalf("bus pattern %q matches %q but its glob %q does not match %q", pattern, topic, glob, prefix+topic)
		}
	})
}

// TestPatternWidenedReport checks that New reports, once per route and
// before anything else, each pub/sub import route whose pattern Redis
// cannot express, naming the pattern and the glob subscribed, and stays
// quiet about patterns whose glob reads the same (`*`, `**`, escapes),
// exact topics, exports and durable routes.
func TestPatternWidenedReport(t *testing.T) {
	srv := redistest.Start(t, nil)
	for _, tc := range []struct {
		route bridge.Route
		glob  string // "" for no report
	}{
		{bridge.Route{Pattern: "{orders,users}.*"}, "app:*.*"},
		{bridge.Route{Pattern: "orders.?", Direction: bridge.Import}, "app:orders.*"},
		{bridge.Route{Pattern: "logs.[abc]"}, "app:logs.?"},
		{bridge.Route{Pattern: "logs.[!a]", Raw: true}, "app:logs.*"},
		{bridge.Route{Pattern: "orders.*"}, ""},
		{bridge.Route{Pattern: "orders.**.paid"}, ""},
		{bridge.Route{Pattern: `orders.\*`}, ""},
		{bridge.Route{Pattern: "orders.created"}, ""},
		{bridge.Route{Pattern: "{orders,users}.*", Direction: bridge.Export}, ""},
		{bridge.Route{Pattern: "{orders,users}.*", Delivery: bridge.Stream, Direction: bridge.Import}, ""},
	} {
		t.Run(tc.route.Pattern, func(t *testing.T) {
			errs := &errLog{}
			opts := testOptions(errs, tc.route)
			opts.InstanceID = "widened-test"
			in := newInstance(t, srv.Client(t), opts)
			rules, err := bridge.ACLRules(opts, '.')
			if err != nil {
				t.Fatal(err)
			}
			n := errs.count(bridge.ErrPatternWidened)
			if tc.glob == "" {
				if n != 0 {
					t.Errorf("reported %q", errs)
				}
				return
			}
			if n != 1 {
				t.Fatalf("%d reports wrapping ErrPatternWidened, want 1: %q", n, errs)
			}
			want := fmt.Sprintf("bridge: pattern widened for Redis: route 0: bus pattern %q is subscribed as the wider Redis glob %q (PSUBSCRIBE): "+
				"the bridge delivers exactly what the pattern matches and filters the rest (Stats.Filtered), "+
				"but Redis sends this instance all the glob's traffic, and ACLRules grants the glob\n", tc.route.Pattern, tc.glob)
			if got := errs.String(); !strings.HasPrefix(got, want) {
				t.Errorf("report:\n%s\nwant:\n%s", got, want)
			}
			if _, globs := in.bridge.RedisSubscriptions(); !slices.Equal(globs, []string{tc.glob}) {
				t.Errorf("subscribed to %q, want %q", globs, tc.glob)
			}
			if !slices.Contains(rules, "&"+tc.glob) && tc.glob != "app:*" {
				t.Errorf("ACLRules %q do not grant the glob %q the report names", rules, tc.glob)
			}
		})
	}
}
