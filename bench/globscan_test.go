package bench

import (
	"slices"
	"sync"
	"testing"

	"github.com/gobwas/glob"
)

// globscan is what an application writes without a router: a slice of
// patterns compiled with github.com/gobwas/glob (the matcher Busline itself
// uses inside segments, with the same options), scanned linearly on every
// publish. Patterns mean exactly what they mean to Busline. A read-write
// mutex makes subscribing during publishes safe; handlers run under the read
// lock, so a handler that subscribes would deadlock.

type globSub struct {
	g *glob.Pattern
	h func(p *payload)
}

type globScan struct {
	mu   sync.RWMutex // protects subs
	subs []*globSub
}

func newGlobScan(testing.TB) router { return &globScan{} }

var globCompiler = glob.Compiler{Separators: []rune{'.'}, Globstar: true}

func (r *globScan) subscribe(pattern string) (func(), error) {
	g, err := globCompiler.Compile(pattern)
	if err != nil {
		return nil, err
	}
	s := &globSub{g, countHit}
	r.mu.Lock()
	r.subs = append(r.subs, s)
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if i := slices.Index(r.subs, s); i >= 0 {
			r.subs = slices.Delete(r.subs, i, i+1)
		}
		r.mu.Unlock()
	}, nil
}

func (r *globScan) publish(topic string, p *payload) {
	r.mu.RLock()
	for _, s := range r.subs {
		if s.g.Match(topic) {
			s.h(p)
		}
	}
	r.mu.RUnlock()
}
