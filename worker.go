package bus

import "fmt"

// The worker of an asynchronous subscription: the goroutine that takes
// batches from its queue (queue.go) and calls the handler, or hands the
// events to the channel of SubscribeChan.

// maxBatch is the most events a worker takes from its queue per lock.
const maxBatch = 128

// work is the goroutine of an asynchronous subscription: it handles its
// queue in batches until the queue is closed and empty.
func (s *Subscription) work() {
	defer s.bus.workerDone(s)
	s.workerID.Store(goid())
	for {
		batch := s.q.take(s)
		if batch == nil {
			return
		}
		for i := 0; i < len(batch); {
			i = s.runBatch(batch, i)
		}
		clear(batch) // let the payloads go (publishers reuse ring slots after the next take)
	}
}

// runBatch handles batch[i:] and returns len(batch), or the index after an
// event whose handler panicked; like deliverFrom, it defers once per batch
// rather than once per event, and it counts the deliveries once at the
// end.
func (s *Subscription) runBatch(batch []queued, i int) (next int) {
	start := i
	defer s.recoverBatch(batch, start, &i, &next)
	// lost counts the events started but not delivered, counted
	// elsewhere: SubscribeChan events whose send stopReader cut short, and
	// events dead-lettered or abandoned after failing (retry.go).
	lost := 0
	for ; i < len(batch); i++ {
		if !s.q.claim() {
			s.countDelivered(uint64(i - start - lost))
			return len(batch) // discarded by Close or Unsubscribe: counted there
		}
		switch {
		case s.out != nil:
			if !s.send(batch[i].e) {
				lost++
			}
		case s.fn != nil:
			if !s.handleQueued(&batch[i]) {
				lost++
			}
		default:
			s.handler(batch[i].ctx, batch[i].e)
		}
	}
	s.countDelivered(uint64(i - start - lost))
	return i
}

// send hands e to the reader of a SubscribeChan subscription and reports
// whether it did; false means stopReader gave up on the reader, and the
// event is counted as dropped.
func (s *Subscription) send(e Event) bool {
	select {
	case s.out <- e:
		return true
	case <-s.stop:
	}
	s.q.abandon(s, e.Topic)
	return false
}

// recoverBatch counts what runBatch delivered up to the panic, the
// panicking call included, and reports it.
func (s *Subscription) recoverBatch(batch []queued, start int, i, next *int) {
	if r := recover(); r != nil {
		s.countDelivered(uint64(*i - start + 1))
		s.bus.reportPanic(batch[*i].ctx, s, batch[*i].e.Topic, r)
		*next = *i + 1
	}
}

// addWorker registers s and starts its worker, unless the bus is closed.
func (b *Bus) addWorker(s *Subscription) error {
	b.workersMu.Lock()
	defer b.workersMu.Unlock()
	if b.closed.Load() {
		return errClosed(fmt.Sprintf("subscribe %q", s.pat.text))
	}
	b.workers[s] = struct{}{}
	go s.work()
	return nil
}

// workerDone is deferred by the worker of s when it exits.
func (b *Bus) workerDone(s *Subscription) {
	b.workersMu.Lock()
	delete(b.workers, s)
	b.workersMu.Unlock()
	if s.out != nil {
		close(s.out)
	}
	s.closeDone()
}
