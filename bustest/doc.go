// Package bustest helps the tests of code that uses package bus: it records
// the events a pattern receives, waits for them with a timeout, and asserts
// on their topics, payloads and order, failing with a message that says what
// was expected and what arrived.
//
//	func TestCheckout(t *testing.T) {
//		b := bus.New(nil)
//		rec := bustest.Record(t, b, "orders.*")
//
//		if err := checkout(t.Context(), b, 42); err != nil { // the code under test
//			t.Fatal(err)
//		}
//
//		rec.WaitN(2)
//		rec.AssertTopics("orders.created", "orders.paid")
//		orders := bustest.Payloads[*Order](rec)
//		...
//	}
//
// A [Recorder] is a synchronous subscription: it records each event on the
// publisher's goroutine, before Publish returns, so it never drops an event,
// records the events of one publisher in publish order and starts no
// goroutine. Events published locally are therefore recorded by the time
// Publish returns; [Recorder.WaitN] and [Recorder.WaitFor] are for events
// that arrive from another goroutine, such as those a bridge imports from
// Redis or those the code under test publishes in the background.
//
// Waiting is bounded: [DefaultTimeout] unless [Recorder.WithTimeout] says
// otherwise. A wait that gives up fails the test with t.Fatalf, so, like
// t.Fatalf, the waits belong on the goroutine of the test given to
// [Record]; their Context variants return an error wrapping [ErrTimeout]
// or the context's error instead, for use on any goroutine. The Assert
// methods report with t.Errorf and let the test go on.
//
// Package [github.com/busline/bus/redistest] starts a real redis-server for
// the integration tests of code that uses package bridge; a Recorder on a
// bridged bus records the events that arrive from Redis like any other.
package bustest
