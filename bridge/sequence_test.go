package bridge_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestSequenceChecks feeds a receiver, with a plain Redis client, the
// genuine envelopes of five events of one source (seq 1 to 5) with one of
// them repeated, as a retried pipeline or XADD does, or missing, as after
// a disconnection or a trim. The receiver must deliver the repeated event
// once and count it (Stats.Duplicates), and report the missing one exactly:
// a *GapError for 1 event, expected 3, got 4 (Stats.Gaps, GapEvents).
//
// Group routes are not here: a member sees a share of each source's
// events, out of order after a claim, so it checks neither (see
// streamReader.seq).
func TestSequenceChecks(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.PubSub, bridge.Stream} {
		t.Run(d.String(), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			envs, source := captureEnvelopes(t, srv, d, 5)
			for _, tc := range []struct {
				name      string
				send      []int // indexes in envs, in order
				want      []string
				dups, gap uint64
			}{
				{"duplicate", []int{0, 1, 1, 2, 3, 4}, seqStrings(0, 5), 1, 0},
				{"duplicate later", []int{0, 1, 2, 1, 3, 4}, seqStrings(0, 5), 1, 0},
				{"gap", []int{0, 1, 3, 4}, []string{"0", "1", "3", "4"}, 0, 1},
			} {
				t.Run(tc.name, func(t *testing.T) {
					// A prefix per case: each receiver starts with
					// nothing known of the source.
					prefix := "seq-" + tc.name + ":"
					opts := durableOptions("to-"+tc.name, bridge.Route{Pattern: "seq.x", Direction: bridge.Import, Delivery: d})
					opts.Prefix = prefix
					b := newBus()
					rec := record(t, b, "seq.x")
					to := newInstanceOn(t, b, srv.Client(t), opts)
					rdb := srv.Client(t)
					for _, i := range tc.send {
						inject(t, rdb, d, prefix, "seq.x", envs[i])
					}
					eventually(t, func() bool {
						s := to.bridge.Stats()
						return s.Received == uint64(len(tc.send)) && s.ImportDepth == 0 && s.Imported+s.Duplicates == s.Received
					}, "every message handled: %d of %d", func() int { return int(to.bridge.Stats().Received) }, func() int { return len(tc.send) })
					if got := payloads(t, rec.snapshot()); !slices.Equal(got, tc.want) {
						t.Errorf("delivered %v, want %v", got, tc.want)
					}
					s := to.bridge.Stats()
					if s.Duplicates != tc.dups || s.Gaps != tc.gap || s.GapEvents != tc.gap {
						t.Errorf("duplicates %d, gaps %d (%d events); want %d, %d (%d)", s.Duplicates, s.Gaps, s.GapEvents, tc.dups, tc.gap, tc.gap)
					}
					var gaps []*bridge.GapError
					for _, err := range to.errs.all() {
						if gap, ok := errors.AsType[*bridge.GapError](err); ok {
							gaps = append(gaps, gap)
						}
					}
					want := bridge.GapError{Source: source, Channel: prefix + "seq.x", Expected: 3, Got: 4}
					switch {
					case tc.gap == 0 && len(gaps) != 0:
						t.Errorf("gaps reported: %v", gaps)
					case tc.gap == 1 && (len(gaps) != 1 || *gaps[0] != want || gaps[0].Missing() != 1):
						t.Errorf("gaps reported: %v; want one, %v", gaps, &want)
					}
					checkAccounting(t, to.bridge)
				})
			}
		})
	}
}

// captureEnvelopes has a bridge export n events ("0" to "n-1") on topic
// "seq.x" through delivery d, under a prefix of its own that nobody
// imports, and returns the messages it sent, one per event (unsigned:
// they can be sent on any channel), and its InstanceID.
func captureEnvelopes(t *testing.T, srv *redistest.Server, d bridge.Delivery, n int) ([]string, string) {
	t.Helper()
	const prefix = "capture:"
	opts := durableOptions("from", bridge.Route{Pattern: "seq.x", Direction: bridge.Export, Delivery: d})
	opts.Prefix = prefix
	opts.CoalesceBytes = -1 // one message per event
	rdb := srv.Client(t)
	ctx := context.Background()
	var spy *plainSubscriber
	if d == bridge.PubSub {
		spy = subscribePlain(t, rdb, []string{prefix + "seq.x"}, nil)
	}
	from := newInstance(t, srv.Client(t), opts)
	for i := range n {
		publish(t, from.bus, "seq.x", strconv.Itoa(i))
	}
	var msgs []string
	if d == bridge.PubSub {
		for len(msgs) < n {
			msg, err := spy.ps.ReceiveTimeout(ctx, waitTimeout)
			if err != nil {
				t.Fatalf("%d of the %d exported messages: %v", len(msgs), n, err)
			}
			if m, ok := msg.(*redis.Message); ok {
				msgs = append(msgs, m.Payload)
			}
		}
	} else {
		key := bridge.StreamKey(prefix, "seq.x")
		eventually(t, func() bool { return rdb.XLen(ctx, key).Val() == int64(n) }, "%d entries", func() int { return n })
		entries, err := rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			msgs = append(msgs, e.Values["data"].(string))
		}
	}
	return msgs, from.bridge.InstanceID()
}

// inject sends msg on topic as a plain Redis client would: PUBLISH on the
// channel of a pub/sub route, XADD to the stream of a durable one.
func inject(t *testing.T, rdb *redis.Client, d bridge.Delivery, prefix, topic, msg string) {
	t.Helper()
	ctx := context.Background()
	var err error
	if d == bridge.PubSub {
		err = rdb.Publish(ctx, prefix+topic, msg).Err()
	} else {
		err = rdb.XAdd(ctx, &redis.XAddArgs{Stream: bridge.StreamKey(prefix, topic), Values: []any{"topic", topic, "data", msg}}).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}
