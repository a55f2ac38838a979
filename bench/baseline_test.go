package bench

import (
	"testing"

	bus "github.com/busline/bus"
)

// The baselines are the limits no library can beat: calling the handlers
// directly (no routing at all), and handing events to a goroutine through a
// buffered channel (no routing, no fan-out).

// direct calls, in subscription order, the handlers of the subscriptions
// that match the topic it was aimed at (decided with bus.CompilePattern at
// setup, outside the timer). It pays for an indirect call per handler, as
// every library does.
type direct struct {
	topic    string
	patterns []string
	hs       []func(p *payload)
}

func newDirect(testing.TB) router { return &direct{} }

func (d *direct) aim(topic string) {
	d.topic = topic
	d.hs = d.hs[:0]
	for _, pat := range d.patterns {
		d.keep(pat)
	}
}

// keep adds the handler of a subscription to pattern if it matches the
// topic aimed at.
func (d *direct) keep(pattern string) {
	if match, err := bus.CompilePattern(pattern, '.'); err == nil && match(d.topic) {
		d.hs = append(d.hs, countHit)
	}
}

func (d *direct) subscribe(pattern string) (func(), error) {
	if _, err := bus.CompilePattern(pattern, '.'); err != nil {
		return nil, err
	}
	d.patterns = append(d.patterns, pattern)
	if d.topic != "" {
		d.keep(pattern)
	}
	return func() {}, nil
}

func (d *direct) publish(_ string, p *payload) {
	for _, h := range d.hs {
		h(p)
	}
}

// countHit is the handler of every synchronous subscription.
func countHit(p *payload) { p.n++ }

// newChan is the asynchronous baseline: per subscriber, a buffered channel
// of *payload (capacity asyncQueue, like the libraries' queues) and one
// goroutine ranging over it. Publishing sends on each channel, blocking
// when it is full.
func newChan(tb testing.TB, subs int, h func(p *payload)) func(p *payload) {
	chs := make([]chan *payload, subs)
	done := make(chan struct{}, subs)
	for i := range chs {
		ch := make(chan *payload, asyncQueue)
		chs[i] = ch
		go func() {
			defer func() { done <- struct{}{} }()
			for p := range ch {
				h(p)
			}
		}()
	}
	tb.Cleanup(func() {
		for _, ch := range chs {
			close(ch)
		}
		for range chs {
			<-done
		}
	})
	return func(p *payload) {
		for _, ch := range chs {
			ch <- p
		}
	}
}
