package bench

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server/gsl"
)

// NATS's generic subject list (nats-server/v2/server/gsl), used as a router:
// Match with a callback that calls the handler. NATS subjects have `*` (one
// token) and a trailing `>` (one or more tokens), which are Busline's `*`
// and a trailing `**`; a `**` elsewhere and in-segment globs have no
// equivalent. Match calls the callback while holding the list's read lock,
// so a handler that subscribes or unsubscribes would deadlock, and calls
// handlers in map order, not subscription order.

type gslSub struct{ h func(p *payload) }

type gslRouter struct{ sl *gsl.GenericSublist[*gslSub] }

func newGSL(testing.TB) router { return &gslRouter{gsl.NewSublist[*gslSub]()} }

// natsSubject translates a Busline pattern into a NATS subject.
func natsSubject(pattern string) (string, error) {
	segs := strings.Split(pattern, ".")
	for i, s := range segs {
		switch {
		case s == "**" && i == len(segs)-1:
			segs[i] = ">"
		case s == "*":
		case strings.ContainsAny(s, `*?[]{}\>`):
			return "", notSupported("NATS subjects have whole-token `*` and a trailing `>` only: no in-segment globs, no `**` before the end")
		}
	}
	return strings.Join(segs, "."), nil
}

func (r *gslRouter) subscribe(pattern string) (func(), error) {
	subj, err := natsSubject(pattern)
	if err != nil {
		return nil, err
	}
	s := &gslSub{countHit}
	if err := r.sl.Insert(subj, s); err != nil {
		return nil, err
	}
	return func() { _ = r.sl.Remove(subj, s) }, nil
}

func (r *gslRouter) publish(topic string, p *payload) {
	r.sl.Match(topic, func(s *gslSub) { s.h(p) })
}
