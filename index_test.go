package bus

import (
	"context"
	"strings"
	"testing"
)

// TestCacheByAddress: a topic published as the very string a match set
// keeps (a constant, found by address) and as a copy of it (found by its
// bytes) reaches the same subscriptions through every change: a set that
// a change made stale is never used by address either.
func TestCacheByAddress(t *testing.T) {
	const topic = "orders.eu.created"
	b := New(nil)
	defer func() { _ = b.Close(ctx) }()
	var got []string
	h := func(name string) Handler {
		return func(context.Context, Event) { got = append(got, name) }
	}
	publishBoth := func() (constant, copied string) {
		t.Helper()
		got = nil
		mustPublish(t, b, topic, nil)
		constant = strings.Join(got, ",")
		got = nil
		mustPublish(t, b, strings.Clone(topic), nil)
		return constant, strings.Join(got, ",")
	}
	var a, star, bb *Subscription
	steps := []struct {
		change func()
		want   string
	}{
		{func() {}, ""},
		{func() { a = mustSubscribe(t, b, topic, h("a")) }, "a"},
		{func() { star = mustSubscribe(t, b, "orders.*.created", h("star")) }, "a,star"},
		{func() { bb = mustSubscribe(t, b, topic, h("b")) }, "a,star,b"},
		{func() { a.Unsubscribe() }, "star,b"},
		{func() { star.Unsubscribe() }, "b"},
		{func() { a = mustSubscribe(t, b, topic, h("a2")) }, "b,a2"},
		{func() { bb.Unsubscribe() }, "a2"},
		{func() { a.Unsubscribe() }, ""},
	}
	for i, st := range steps {
		st.change()
		for range 3 { // the first publish may fill the cache, the others hit it
			if c, d := publishBoth(); c != st.want || d != st.want {
				t.Fatalf("step %d: constant topic got %q, copy got %q, want %q", i, c, d, st.want)
			}
		}
	}
}
