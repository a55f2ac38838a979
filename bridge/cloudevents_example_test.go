package bridge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log"
	"strings"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// A CloudEvents route: what this instance publishes on orders.* goes to
// Redis as CloudEvents JSON, which a CloudEvents SDK in another language
// parses, and CloudEvents other producers publish on app:orders.* arrive
// here with their attributes in Meta. (It needs a Redis server, so it is
// compiled but not run; TestCloudEventsNodeExport and
// TestCloudEventsNodeImport run the same with the JavaScript SDK.)
func ExampleFormat() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	b := bus.New(nil)
	defer b.Close(context.Background())
	br, err := bridge.New(b, rdb, &bridge.Options{
		Prefix:     "app:",
		InstanceID: "urn:shop:orders-1", // the CloudEvents source: a URI-reference
		Routes:     []bridge.Route{{Pattern: "orders.*", Format: bridge.CloudEvents}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer br.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := br.Ready(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = b.Subscribe("orders.*", func(_ context.Context, e bus.Event) {
		if e.Remote() {
			m := e.Meta
			fmt.Printf("%s from %s at %s: id %s, type %s, traceparent %s: %s\n",
				e.Topic, m.Source, m.Time, m.Headers["id"], m.Headers["type"], m.Headers["traceparent"], e.Payload)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	// Exported as {"specversion":"1.0","id":"app:orders.created:1",
	// "source":"urn:shop:orders-1","type":"orders.created",...,
	// "traceparent":"00-...-01","data":{"id":42}}.
	err = b.PublishEvent(context.Background(), bus.Event{
		Topic:   "orders.created",
		Payload: map[string]int{"id": 42},
		Meta:    &bus.Meta{Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
	})
	if err != nil {
		log.Fatal(err)
	}
}

// String names a Format.
func ExampleFormat_String() {
	fmt.Println(bridge.Envelope, bridge.CloudEvents)
	// Output: envelope cloudevents
}

// Checking the signature of a CloudEvent that a route with a SigningKey
// exported, with nothing but HMAC-SHA256 and base64url: the recipe of
// "Signed CloudEvents" (see Format), which any language can follow.
func ExampleFormat_verify() {
	const msg = `{"specversion":"1.0","id":"app:orders.created:1","source":"urn:shop:orders-1",` +
		`"type":"orders.created","time":"2026-12-03T12:00:00Z","datacontenttype":"application/json",` +
		`"buslineseq":"1","data":{"id":42},"buslineepoch":"9f3c0a1b2c3d4e5f",` +
		`"buslinesig":"XgnL9Ew8gLjf0QBCpZJYqtwe5F30n5OKYwAr8nmDOQ0"}`
	key := []byte("secret") // Options.SigningKey
	verify := func(msg string) bool {
		// The last 60 bytes are ,"buslinesig":"<43 characters>"}; the
		// signature covers what precedes them, followed by '}'.
		body, sig := msg[:len(msg)-60], msg[len(msg)-45:len(msg)-2]
		h := hmac.New(sha256.New, key)
		h.Write([]byte(body + "}"))
		return hmac.Equal([]byte(base64.RawURLEncoding.EncodeToString(h.Sum(nil))), []byte(sig))
	}
	fmt.Println(verify(msg))
	fmt.Println(verify(strings.Replace(msg, `"id":42`, `"id":43`, 1))) // the data altered
	// Output:
	// true
	// false
}
