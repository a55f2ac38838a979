package bridge_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// durableACL are the rules the package documentation gives for durable
// routes under the prefix "app:".
const durableACL = "clearselectors resetchannels resetkeys ~app:stream:* ~app:checkpoint:* -@all " +
	"+xadd +ping +xread +xrevrange +hget +hset +xgroup|create +xreadgroup +xack +xautoclaim"

// TestDurableACL runs an exporter, a Stream importer and a Group member as
// an ACL user holding exactly the documented rules: every event arrives.
// Without XGROUP CREATE, Ready reports the refusal wrapping ErrSubscribe.
func TestDurableACL(t *testing.T) {
	srv := redistest.Start(t, nil)
	cli := func(args ...string) {
		t.Helper()
		if _, err := srv.CLI(args...); err != nil {
			t.Fatal(err)
		}
	}
	// ACLRules gives the documented rules for these routes, and they are
	// enough: the user below is made from ACLRules' answer.
	rules, err := bridge.ACLRules(&bridge.Options{Prefix: "app:", Routes: []bridge.Route{
		{Pattern: "acl.*", Delivery: bridge.Stream},
		{Pattern: "acl.*", Delivery: bridge.Group, Direction: bridge.Import},
	}}, '.')
	if err != nil {
		t.Fatal(err)
	}
	got, want := slices.Sorted(slices.Values(rules)), slices.Sorted(slices.Values(strings.Fields(durableACL)))
	if !slices.Equal(got, want) {
		t.Fatalf("ACLRules = %q, want the documented %q", rules, durableACL)
	}
	cli(append([]string{"ACL", "SETUSER", "durable", "on", ">s3cret"}, rules...)...)
	cli(append([]string{"ACL", "SETUSER", "nogroup", "on", ">s3cret"}, strings.Fields(strings.Replace(durableACL, "+xgroup|create", "", 1))...)...)
	client := func(user string) *redis.Client {
		o := srv.ClientOptions()
		o.Username, o.Password = user, "s3cret"
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	a := newInstance(t, client("durable"), durableOptions("a",
		bridge.Route{Pattern: "acl.*", Delivery: bridge.Stream, Direction: bridge.Export}))
	s := newInstance(t, client("durable"), durableOptions("s",
		bridge.Route{Pattern: "acl.*", Delivery: bridge.Stream, Direction: bridge.Import}))
	g := newInstance(t, client("durable"), durableOptions("g",
		bridge.Route{Pattern: "acl.*", Delivery: bridge.Group, Direction: bridge.Import}))
	rs, rg := record(t, s.bus, "acl.*"), record(t, g.bus, "acl.*")
	for i := range 20 {
		publish(t, a.bus, "acl.x", strconv.Itoa(i))
	}
	rs.waitFor(t, 20)
	rg.waitFor(t, 20)
	eventually(t, func() bool { return g.bridge.Stats().StreamAcked == 20 }, "acknowledged")
	for _, in := range []*instance{a, s, g} {
		if strings.Contains(in.errs.String(), "NOPERM") {
			t.Errorf("%s: refused:\n%s", in.bridge.InstanceID(), in.errs)
		}
	}

	opts := durableOptions("n", bridge.Route{Pattern: "acl.*", Delivery: bridge.Group, Direction: bridge.Import, Group: "other"})
	opts.OnError = func(error) {}
	br, err := bridge.New(newBus(), client("nogroup"), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err = br.Ready(ctx)
	if !errors.Is(err, bridge.ErrSubscribe) || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Ready without XGROUP CREATE: %v", err)
	}
	closeCtx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := br.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
}
