package bridge_test

import (
	"fmt"
	"strings"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
)

// The Redis keys of the streams of durable routes: one stream per route,
// named after the route's Pattern unless Route.Stream names it. (The
// checkpoints of an instance's Stream routes are kept in the hash
// Prefix + "checkpoint:" + InstanceID.)
func ExampleStreamKey() {
	routes := []bridge.Route{
		{Pattern: "orders.*", Delivery: bridge.Stream},                     // every instance reads every order
		{Pattern: "emails.send", Delivery: bridge.Group, Group: "mailers"}, // one mailer sends each email
		{Pattern: "audit.**", Delivery: bridge.Stream, Stream: "audit"},
	}
	for _, r := range routes {
		name := r.Stream
		if name == "" {
			name = r.Pattern
		}
		fmt.Printf("%-12s %-6s %s\n", r.Pattern, r.Delivery, bridge.StreamKey("app:", name))
	}
	// Output:
	// orders.*     stream app:stream:orders.*
	// emails.send  group  app:stream:emails.send
	// audit.**     stream app:stream:audit
}

// A consumer-group route that retries a failed entry twice more, 200ms
// then 400ms later, and moves it to its dead-letter stream once Redis has
// delivered it three times (a claim after ClaimIdle is a delivery): keys
// and the ACL rules its user needs.
func ExampleDeadKey() {
	opts := &bridge.Options{
		Prefix: "app:",
		Routes: []bridge.Route{{
			Pattern:       "emails.send",
			Delivery:      bridge.Group,
			Direction:     bridge.Import,
			Group:         "mailers",
			Retry:         &bus.RetryPolicy{Attempts: 3, Initial: 200 * time.Millisecond, Jitter: 0.2},
			MaxDeliveries: 3,
		}},
	}
	fmt.Println("stream:", bridge.StreamKey(opts.Prefix, "emails.send"))
	fmt.Println("dead letters:", bridge.DeadKey(opts.Prefix, "emails.send"))
	rules, err := bridge.ACLRules(opts, bus.DefaultSeparator)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(strings.Join(rules, " "))
	// Output:
	// stream: app:stream:emails.send
	// dead letters: app:dead:emails.send
	// clearselectors resetchannels resetkeys ~app:stream:* ~app:dead:* -@all +xgroup|create +xreadgroup +xack +xautoclaim +xadd +xpending +multi +exec +ping
}
