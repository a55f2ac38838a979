package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestDropReportsSayWhat checks the batched reports of drops: the first
// drop of a reason is reported with its details, those that follow within
// a second are held and reported as one *DropError, which must say what
// became of them and where they are counted, not just "encode: 1 event".
func TestDropReportsSayWhat(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "typed.*", Codec: bridge.JSON[int]()}
	for _, tc := range []struct {
		name   string
		reason error
		drop   func(t *testing.T, in *instance)
		want   string
	}{
		{"encode", bridge.ErrEncode, func(t *testing.T, in *instance) {
			publish(t, in.bus, "typed.bad", func() {}) // JSON cannot encode a func
		}, "bridge: encode: 1 more event not exported (see Stats.EncodeErrors)"},
		{"decode", bridge.ErrDecode, func(t *testing.T, in *instance) {
			if _, err := srv.CLI("PUBLISH", "app:typed.bad", "not json"); err != nil {
				t.Fatal(err)
			}
		}, "bridge: decode: 1 more event not delivered (see Stats.DecodeErrors)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &errLog{}
			in := newInstance(t, srv.Client(t), testOptions(log, route))
			tc.drop(t, in)
			eventually(t, func() bool { return log.count(tc.reason) == 1 }, "the first report: %s", log.String)
			tc.drop(t, in) // within a second: held back until Close
			// Close once the second drop is counted: a message Redis sent
			// that the bridge has not read yet is not received, and
			// closing the connection discards it.
			eventually(t, func() bool { s := in.bridge.Stats(); return s.EncodeErrors+s.DecodeErrors == 2 },
				"the second drop counted: %v", in.bridge.Stats)
			if err := closeBridge(in.bridge); err != nil {
				t.Fatal(err)
			}
			var drop *bridge.DropError
			var got []string
			for _, err := range log.all() {
				if errors.As(err, &drop) {
					got = append(got, err.Error())
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("DropError reports %q, want [%q]\nall reports:\n%s", got, tc.want, log)
			}
			if first := strings.SplitN(log.String(), "\n", 2)[0]; !strings.Contains(first, `topic "typed.bad"`) {
				t.Errorf("first report %q: want the details of the drop", first)
			}
		})
	}
}

// TestOutageReportsOnce kills the redis-server under a bridge: every
// reconnect attempt fails, several a second at first, and OnError must not
// get one identical report per attempt. It gets the lost connection, the
// first failure to connect (a new cause), and then at most one summary
// per ReconnectMax, which says how many attempts failed; Ready carries the
// last failure meanwhile. Once Redis is back and the bridge resubscribed,
// a new outage is reported again from its start.
func TestOutageReportsOnce(t *testing.T) {
	srv := redistest.Start(t, nil)
	log := &errLog{}
	opts := testOptions(log, bridge.Route{Pattern: "orders.*"})
	opts.ReconnectMin, opts.ReconnectMax = 5*time.Millisecond, 300*time.Millisecond
	in := newInstance(t, srv.Client(t), opts)

	for round := range 2 {
		mark := len(log.all())
		srv.Kill()
		eventually(t, func() bool { return log.count(bridge.ErrConnect) > 0 }, "a report of the failure to connect")
		start := time.Now()
		time.Sleep(4 * opts.ReconnectMax) // many attempts: a dozen with this backoff
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := in.bridge.Ready(ctx)
		cancel()
		if !errors.Is(err, bridge.ErrConnect) || !strings.Contains(err.Error(), "last error: cannot connect to redis at "+srv.Addr()) {
			t.Errorf("round %d: Ready = %v; want the last failure to connect", round, err)
		}
		elapsed := time.Since(start)
		var got []string
		for _, err := range log.all()[mark:] {
			if errors.Is(err, bridge.ErrDisconnected) {
				got = append(got, err.Error())
			}
		}
		if len(got) < 3 {
			t.Fatalf("round %d: reports %q; want the lost connection, the failure to connect, then a summary", round, got)
		}
		if !strings.Contains(got[0], "pub/sub connection lost") {
			t.Errorf("round %d: first report %q; want the lost connection", round, got[0])
		}
		if want := "bridge: cannot connect to redis at " + srv.Addr() + ": "; !strings.HasPrefix(got[1], want) {
			t.Errorf("round %d: second report %q; want it to start with %q", round, got[1], want)
		}
		summary := regexp.MustCompile(`^bridge: still cannot connect to redis at ` + regexp.QuoteMeta(srv.Addr()) + ` after \d+ attempts in \d+(\.\d+)?m?s: dial tcp `)
		for _, r := range got[2:] {
			if !summary.MatchString(r) {
				t.Errorf("round %d: report %q is not a summary", round, r)
			}
		}
		// The first summary comes once ReconnectMax has passed since the
		// report of the failure to connect, then one per ReconnectMax at
		// most.
		if limit := 1 + int(elapsed/opts.ReconnectMax); len(got)-2 > limit {
			t.Errorf("round %d: %d summaries in %v, want at most %d:\n%s", round, len(got)-2, elapsed, limit, strings.Join(got, "\n"))
		}
		t.Logf("round %d: %d reports in %v:\n%s", round, len(got), elapsed, strings.Join(got, "\n"))
		srv.Restart()
		eventually(t, func() bool { return log.count(bridge.ErrPossibleGap) > round }, "the resubscription")
		ready(t, in.bridge)
	}
}

// TestReadyExportOnly checks Ready on bridges that read nothing from
// Redis, which have no subscription to wait for: Ready must still confirm
// that Redis answers, and say why not, rather than return nil at once
// with a wrong address or password.
func TestReadyExportOnly(t *testing.T) {
	srv := redistest.Start(t, nil)
	closed := progtest.RefusedAddr(t)
	for _, route := range []bridge.Route{
		{Pattern: "orders.*", Direction: bridge.Export},
		{Pattern: "orders.*", Direction: bridge.Export, Delivery: bridge.Stream},
	} {
		for _, tc := range []struct {
			name string
			opts *redis.Options
			want string // in Ready's error; "" for success
		}{
			{"redis up", srv.ClientOptions(), ""},
			{"closed port", &redis.Options{Addr: closed}, "bridge: not ready: context deadline exceeded; last error: cannot connect to redis at " + closed + ": dial tcp " + closed + ": connect: connection refused"},
			{"wrong password", func() *redis.Options {
				o := srv.ClientOptions()
				o.Username, o.Password = "nobody", "wrong"
				return o
			}(), "bridge: not ready: context deadline exceeded; last error: cannot connect to redis at " + srv.Addr() + ": WRONGPASS"},
		} {
			t.Run(route.Delivery.String()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				rdb := redis.NewClient(tc.opts)
				t.Cleanup(func() { _ = rdb.Close() })
				b := newBus()
				t.Cleanup(func() { _ = b.Close(context.Background()) })
				br, err := bridge.New(b, rdb, testOptions(&errLog{}, route))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
				defer cancel()
				err = br.Ready(ctx)
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("Ready: %v", err)
				case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want) || !errors.Is(err, bridge.ErrConnect)):
					t.Errorf("Ready = %v\nwant an error wrapping ErrConnect starting with %q", err, tc.want)
				}
				if err := closeBridge(br); err != nil {
					t.Error(err)
				}
				if err := br.Ready(context.Background()); !errors.Is(err, bridge.ErrClosed) {
					t.Errorf("Ready after Close = %v, want ErrClosed", err)
				}
			})
		}
	}
}

// TestSubscribeRefusalNamesWhat runs bridges as an ACL user who may use
// the channels of "app:" only: Ready's error, and the report, must say
// which command Redis refused and on what (a few names, then "and N
// more"), not just NOPERM.
func TestSubscribeRefusalNamesWhat(t *testing.T) {
	srv := redistest.Start(t, nil)
	if _, err := srv.CLI("ACL", "SETUSER", "bridge", "on", ">s3cret", "resetchannels", "&app:*", "resetkeys", "-@all",
		"+publish", "+subscribe", "+unsubscribe", "+psubscribe", "+punsubscribe", "+ping"); err != nil {
		t.Fatal(err)
	}
	var five []bridge.Route
	for i := range 5 {
		five = append(five, bridge.Route{Pattern: fmt.Sprintf("alerts.%d", i), Direction: bridge.Import})
	}
	for _, tc := range []struct {
		name   string
		prefix string
		routes []bridge.Route
		want   string
	}{
		{"channels outside the rules", "other:", five,
			`bridge: subscribe refused: SUBSCRIBE "other:alerts.0", "other:alerts.1", "other:alerts.2" and 2 more: NOPERM`},
		{"a glob not listed", "app:", append(five[:1:1], bridge.Route{Pattern: "orders.*", Direction: bridge.Import}),
			`bridge: subscribe refused: PSUBSCRIBE "app:orders.*": NOPERM`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := srv.ClientOptions()
			o.Username, o.Password = "bridge", "s3cret"
			rdb := redis.NewClient(o)
			t.Cleanup(func() { _ = rdb.Close() })
			log := &errLog{}
			opts := testOptions(log, tc.routes...)
			opts.Prefix = tc.prefix
			b := newBus()
			t.Cleanup(func() { _ = b.Close(context.Background()) })
			br, err := bridge.New(b, rdb, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = closeBridge(br) })
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			err = br.Ready(ctx)
			if !errors.Is(err, bridge.ErrSubscribe) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Ready = %v\nwant an error wrapping ErrSubscribe starting with %q", err, tc.want)
			}
			eventually(t, func() bool { return log.count(bridge.ErrSubscribe) > 0 }, "the report")
			if first := log.all()[0].Error(); !strings.HasPrefix(first, tc.want) {
				t.Errorf("report %q, want it to start with %q", first, tc.want)
			}
		})
	}
}
