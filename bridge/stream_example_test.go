package bridge_test

import (
	"fmt"

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
