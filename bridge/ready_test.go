package bridge_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/progtest"
	"github.com/redis/go-redis/v9"
)

// TestReadyWrongAddress starts bridges against an address nothing listens
// on: Ready's error must say why it is not ready (the last connection
// error, matched by errors.Is together with the context's error), and the
// reports must say "cannot connect", not "connection lost", for a
// connection never made. Each kind of import path is tried: classic
// pub/sub, sharded pub/sub on a cluster client, and a durable route.
func TestReadyWrongAddress(t *testing.T) {
	addr := progtest.RefusedAddr(t)
	for _, tc := range []struct {
		name    string
		client  func() redis.UniversalClient
		route   bridge.Route
		want    string // what Ready's error must contain after "last error: "
		wantErr error  // what errors.Is must find in Ready's error
	}{
		{"pub/sub", func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: addr, Protocol: 3}) },
			bridge.Route{Pattern: "orders.*"}, "cannot connect to redis at " + addr + ": dial tcp " + addr + ": connect: connection refused", bridge.ErrConnect},
		{"pub/sub go-redis", func() redis.UniversalClient {
			return pubsubPaths[1].client(&redis.Options{Addr: addr, Protocol: 3})
		}, bridge.Route{Pattern: "orders.*"}, "cannot connect to redis at " + addr + ": dial tcp " + addr + ": connect: connection refused", bridge.ErrConnect},
		{"cluster", func() redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, Protocol: 3})
		}, bridge.Route{Pattern: "orders.created"}, "cannot connect to redis at " + addr + ": cluster topology: ", bridge.ErrConnect},
		{"stream", func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: addr, Protocol: 3}) },
			bridge.Route{Pattern: "orders.*", Delivery: bridge.Stream, Direction: bridge.Import}, "stream checkpoint: load", bridge.ErrCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := tc.client()
			defer rdb.Close()
			b := bus.New(nil)
			defer b.Close(context.Background())
			errs := &errLog{}
			br, err := bridge.New(b, rdb, &bridge.Options{
				InstanceID: "ready-test",
				Routes:     []bridge.Route{tc.route},
				OnError:    errs.add,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if err := br.Close(ctx); err != nil {
					t.Error(err)
				}
			}()
			// go-redis retries a failed dial by itself for about two
			// seconds with its default options before the bridge sees
			// the error: wait for the first report, then give Ready a
			// short context.
			eventually(t, func() bool { return errs.count(tc.wantErr) > 0 }, "a report: %v", errs.String)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err = br.Ready(ctx)
			if err == nil {
				t.Fatal("Ready succeeded against a closed port")
			}
			msg := err.Error()
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, tc.wantErr) || !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("Ready: %q; want it to match context.DeadlineExceeded, %v and ECONNREFUSED", msg, tc.wantErr)
			}
			if want := "bridge: not ready: context deadline exceeded; last error: " + tc.want; !strings.HasPrefix(msg, want) {
				t.Errorf("Ready: %q\nwant a message starting with %q", msg, want)
			}
			if strings.Count(msg, "bridge:") != 1 {
				t.Errorf("Ready: %q: one package prefix only", msg)
			}
			if errs.count(bridge.ErrDisconnected) != errs.count(bridge.ErrConnect) {
				t.Errorf("reports: %q; a connection never made is not lost", errs)
			}
			if first := strings.SplitN(errs.String(), "\n", 2)[0]; !strings.Contains(first, tc.want) || strings.Contains(first, "lost") {
				t.Errorf("first report %q; want it to contain %q", first, tc.want)
			}
		})
	}
}

// TestReadyNoErrorYet checks Ready's error when ctx ends before any
// connection attempt has failed: the context's error alone, with one
// prefix. The server accepts connections and never answers, so that no
// attempt can fail before Ready is called (a refused dial could, and did
// under load).
func TestReadyNoErrorYet(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: silentAddr(t)})
	defer rdb.Close()
	b := bus.New(nil)
	defer b.Close(context.Background())
	br, err := bridge.New(b, rdb, &bridge.Options{Routes: []bridge.Route{{Pattern: "x"}}, OnError: func(error) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = br.Close(ctx)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := br.Ready(ctx); err == nil || err.Error() != "bridge: not ready: context canceled" || !errors.Is(err, context.Canceled) {
		t.Errorf("Ready = %v; want bridge: not ready: context canceled", err)
	}
}

// TestNewOnClosedBus checks that New refuses a closed bus, with or
// without routes, with an error wrapping bus.ErrClosed and one prefix.
func TestNewOnClosedBus(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: progtest.RefusedAddr(t)})
	defer rdb.Close()
	for _, tc := range []struct {
		name   string
		routes []bridge.Route
	}{
		{"no routes", nil},
		{"import only", []bridge.Route{{Pattern: "orders.*", Direction: bridge.Import}}},
		{"export", []bridge.Route{{Pattern: "orders.*"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bus.New(nil)
			if err := b.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			br, err := bridge.New(b, rdb, &bridge.Options{Routes: tc.routes, OnError: func(error) {}})
			if err == nil {
				_ = closeBridge(br)
				t.Fatal("New accepted a closed bus")
			}
			if !errors.Is(err, bus.ErrClosed) || err.Error() != "bridge: new: the bus is closed" {
				t.Errorf("New = %q; want bridge: new: the bus is closed, wrapping bus.ErrClosed", err)
			}
		})
	}
}

// silentAddr returns the address of a server that accepts connections,
// reads nothing and answers nothing, until the end of the test, when it
// closes them.
func silentAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}
