package redistest_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/bustest"
	"github.com/busline/bus/redistest"
)

// A test starts its own server and talks to it with go-redis or redis-cli.
// (In a real test, t is the test's *testing.T; the examples here get a
// stand-in, so that their output can be checked. They need redis-server
// and redis-cli on PATH.)
func Example() {
	exampleTest(func(t testing.TB) {
		srv := redistest.Start(t, nil) // killed when the test ends
		rdb := srv.Client(t)           // closed when the test ends

		ctx := context.Background()
		if err := rdb.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
			t.Fatal(err)
		}
		out, err := srv.CLI("GET", "greeting")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(out)
	})
	// Output:
	// hello
}

type Order struct{ ID int }

// An integration test of two instances of a service that share "orders.**"
// through a real Redis: what instance a publishes, instance b receives,
// marked as coming from a.
func Example_bridge() {
	exampleTest(func(t testing.TB) {
		srv := redistest.Start(t, nil)
		a := startInstance(t, srv, "a")
		b := startInstance(t, srv, "b")
		rec := bustest.Record(t, b, "orders.**")

		if err := a.Publish(context.Background(), "orders.created", &Order{ID: 42}); err != nil {
			t.Fatal(err)
		}

		e := rec.WaitN(1)[0] // it comes through Redis, on a goroutine of b's bridge
		fmt.Println(e.Topic, e.Remote(), e.Meta.Source, e.Payload.(*Order).ID)
	})
	// Output:
	// orders.created true a 42
}

// startInstance starts a bus and its bridge to srv, as one instance of the
// service would, and closes both when the test ends.
func startInstance(t testing.TB, srv *redistest.Server, id string) *bus.Bus {
	t.Helper()
	b := bus.New(nil)
	br, err := bridge.New(b, srv.Client(t), &bridge.Options{
		InstanceID: id,
		Routes:     []bridge.Route{{Pattern: "orders.**", Codec: bridge.JSON[*Order]()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := br.Close(ctx); err != nil {
			t.Errorf("closing the bridge: %v", err)
		}
		if err := b.Close(ctx); err != nil {
			t.Errorf("closing the bus: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := br.Ready(ctx); err != nil { // subscribed to Redis
		t.Fatal(err)
	}
	return b
}

// Kill is a crash, Restart brings the server back on the same port, with
// its data when it keeps an append-only file; the same client reconnects.
func ExampleServer_Restart() {
	exampleTest(func(t testing.TB) {
		srv := redistest.Start(t, &redistest.Options{AppendOnly: true})
		rdb := srv.Client(t)
		ctx := context.Background()
		if err := rdb.Set(ctx, "k", "kept", 0).Err(); err != nil {
			t.Fatal(err)
		}

		srv.Kill()
		_, err := srv.CLI("PING")
		fmt.Println("while down, PING fails:", err != nil)
		srv.Restart()

		v, err := rdb.Get(ctx, "k").Result()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("after restart:", v)
	})
	// Output:
	// while down, PING fails: true
	// after restart: kept
}

// A cluster of three masters with a replica each: fail the master of a
// key's slot over to its replica, gracefully, and the cluster client follows
// the MOVED reply to the new master, losing nothing.
func ExampleCluster_Failover() {
	exampleTest(func(t testing.TB) {
		c := redistest.StartClusterWith(t, &redistest.ClusterOptions{
			ReplicasPerMaster: 1,
			NodeTimeout:       2 * time.Second, // a killed master is replaced within seconds
		})
		cc := c.Client(t)
		ctx := context.Background()
		if err := cc.Set(ctx, "order:42", "paid", 0).Err(); err != nil {
			t.Fatal(err)
		}

		slot := redistest.KeySlot("order:42")
		master := c.MasterOf(slot)
		replica := c.ReplicasOf(master)[0]
		c.Failover(replica) // CLUSTER FAILOVER on the replica; blocks until done
		fmt.Println("the replica took over:", c.MasterOf(slot) == replica)

		v, err := cc.Get(ctx, "order:42").Result()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("order:42 is", v)
	})
	// Output:
	// the replica took over: true
	// order:42 is paid
}

// A master, a replica and three sentinels: kill the master with SIGKILL,
// and the failover client writes to the promoted replica once the
// sentinels have switched to it, a few seconds later.
func ExampleStartSentinel() {
	exampleTest(func(t testing.TB) {
		d := redistest.StartSentinel(t, nil) // 1 master, 1 replica, 3 sentinels
		rdb := d.Client(t)                   // redis.NewFailoverClient(d.FailoverOptions())
		ctx := context.Background()
		if err := rdb.Set(ctx, "k", "v1", 0).Err(); err != nil {
			t.Fatal(err)
		}

		old := d.KillMaster()
		m, _ := d.WaitFailover(old) // also returns how long the failover took
		fmt.Println("a replica was promoted:", m != old && m == d.Master())

		if err := rdb.Set(ctx, "k", "v2", 0).Err(); err != nil {
			t.Fatal(err)
		}
		fmt.Println("written again through", d.MasterName())
	})
	// Output:
	// a replica was promoted: true
	// written again through mymaster
}

// exampleTest runs body as go test runs a test function, with a stand-in
// for its *testing.T: examples cannot get a real one.
func exampleTest(body func(t testing.TB)) {
	t := &exampleT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(t)
	}()
	<-done
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// exampleT is the stand-in: it prints failures, and only the methods below
// are used; the embedded nil testing.TB provides the rest of the method set
// and would panic.
type exampleT struct {
	testing.TB
	cleanups []func() // used by one goroutine at a time in these examples
}

func (t *exampleT) Helper()           {}
func (t *exampleT) Cleanup(fn func()) { t.cleanups = append(t.cleanups, fn) }

func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "redistest-example")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

func (t *exampleT) Errorf(format string, args ...any) {
	fmt.Printf("FAIL: "+format+"\n", args...)
}

func (t *exampleT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	runtime.Goexit()
}

func (t *exampleT) Fatal(args ...any) {
	t.Fatalf("%s", fmt.Sprint(args...))
}
