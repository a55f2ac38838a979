package bustest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bustest"
)

type Order struct {
	ID    int
	Total float64
}

// checkout stands for the code under test: it publishes two events.
func checkout(ctx context.Context, b *bus.Bus, id int) error {
	if err := b.Publish(ctx, "orders.created", &Order{ID: id, Total: 9.5}); err != nil {
		return err
	}
	return b.Publish(ctx, "orders.paid", &Order{ID: id, Total: 9.5})
}

// A test records what a pattern receives, waits for it, and asserts on
// the topics and the typed payloads. (In a real test, t is the test's
// *testing.T; the examples here get a stand-in that prints failures, so
// that their output can be checked.)
func Example() {
	exampleTest(func(t testing.TB) {
		ctx := context.Background()
		b := bus.New(nil)
		t.Cleanup(func() {
			if err := b.Close(ctx); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		rec := bustest.Record(t, b, "orders.*")

		if err := checkout(ctx, b, 42); err != nil {
			t.Fatal(err)
		}

		rec.WaitN(2)
		rec.AssertTopics("orders.created", "orders.paid")
		for _, o := range bustest.Payloads[*Order](rec) {
			fmt.Println("order", o.ID, o.Total)
		}
	})
	// Output:
	// order 42 9.5
	// order 42 9.5
}

// WaitFor waits for an event that arrives from another goroutine, such as
// one a bridge imports from Redis.
func ExampleRecorder_WaitFor() {
	exampleTest(func(t testing.TB) {
		ctx := context.Background()
		b := bus.New(nil)
		t.Cleanup(func() {
			if err := b.Close(ctx); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		rec := bustest.Record(t, b, "orders.*")

		go func() {
			for id := range 5 {
				time.Sleep(time.Millisecond)
				if err := b.Publish(ctx, "orders.paid", &Order{ID: id}); err != nil {
					fmt.Println(err)
				}
			}
		}()

		e := rec.WaitFor("order 3 paid", func(e bus.Event) bool {
			o, ok := e.Payload.(*Order)
			return e.Topic == "orders.paid" && ok && o.ID == 3
		})
		fmt.Println(e.Topic, e.Payload.(*Order).ID)
		rec.WaitN(5) // the publisher is done before the bus closes
	})
	// Output:
	// orders.paid 3
}

// A failing wait says what it waited for, for how long, and what arrived.
// WaitNContext returns that as an error, for goroutines other than the
// test's; WaitN would pass the same message to t.Fatalf.
func ExampleRecorder_WaitNContext() {
	exampleTest(func(t testing.TB) {
		ctx := context.Background()
		b := bus.New(nil)
		t.Cleanup(func() {
			if err := b.Close(ctx); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		rec := bustest.Record(t, b, "orders.*").WithTimeout(50 * time.Millisecond)

		if err := b.Publish(ctx, "orders.created", &Order{ID: 42}); err != nil {
			t.Fatal(err)
		}
		_, err := rec.WaitNContext(ctx, 2)
		fmt.Println(err)
	})
	// Output:
	// bustest: timed out after 50ms waiting on "orders.*" for 2 events; 1 event arrived:
	//	#1 orders.created: &bustest_test.Order{ID:42, Total:0}
}

// AssertOrder checks the relative order of some topics, ignoring the
// others; AssertTopics checks the whole sequence. Both report a mismatch
// with t.Errorf and let the test go on.
func ExampleRecorder_AssertOrder() {
	exampleTest(func(t testing.TB) {
		ctx := context.Background()
		b := bus.New(nil)
		t.Cleanup(func() {
			if err := b.Close(ctx); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		rec := bustest.Record(t, b, "orders.*")
		for _, topic := range []string{"orders.created", "orders.audit", "orders.paid"} {
			if err := b.Publish(ctx, topic, nil); err != nil {
				t.Fatal(err)
			}
		}

		rec.AssertOrder("orders.created", "orders.paid")  // passes
		rec.AssertTopics("orders.created", "orders.paid") // fails: orders.audit is extra
	})
	// Output:
	// FAIL: bustest: topics on "orders.*": #2 is "orders.audit", want "orders.paid"
	// 	got  [orders.created orders.audit orders.paid] (3 events)
	// 	want [orders.created orders.paid] (2 events)
}

// AssertNoMore after WaitN checks that an event arrives exactly once.
func ExampleRecorder_AssertNoMore() {
	exampleTest(func(t testing.TB) {
		ctx := context.Background()
		b := bus.New(nil)
		t.Cleanup(func() {
			if err := b.Close(ctx); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		rec := bustest.Record(t, b, "orders.paid")
		if err := b.Publish(ctx, "orders.paid", &Order{ID: 1}); err != nil {
			t.Fatal(err)
		}

		rec.WaitN(1)
		if rec.AssertNoMore(20 * time.Millisecond) {
			fmt.Println("exactly once")
		}
	})
	// Output:
	// exactly once
}

// exampleTest runs body as go test runs a test function, with a stand-in
// for its *testing.T, and prints the failures it reported, each after
// "FAIL: ", a Fatal last: examples cannot get a real one. Only the methods
// of fakeTB are used; the nil testing.TB it embeds would panic.
func exampleTest(body func(t testing.TB)) {
	f := runFake(&fakeTB{}, body)
	for _, msg := range f.errors {
		fmt.Println("FAIL: " + msg)
	}
	if f.fatal != "" {
		fmt.Println("FAIL: " + f.fatal)
	}
}
