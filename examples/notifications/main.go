// Command notifications is the classic real-time notification service, in
// one process: a listener subscribed to the topic "notifications" and a
// publisher sending it two messages.
//
//	go run ./examples/notifications
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/busline/bus"
)

func main() {
	ctx := context.Background()
	b := bus.New(nil)
	defer b.Close(ctx)

	// The listener.
	_, err := b.Subscribe("notifications", func(ctx context.Context, e bus.Event) {
		fmt.Printf("listener received on %s: %s\n", e.Topic, e.Payload)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "notifications:", err)
		os.Exit(1)
	}

	// The publisher.
	for _, msg := range []string{"New message from user123", "Important update!"} {
		fmt.Printf("publisher sends: %s\n", msg)
		if err := b.Publish(ctx, "notifications", msg); err != nil {
			fmt.Fprintln(os.Stderr, "notifications:", err)
			os.Exit(1)
		}
	}
}
