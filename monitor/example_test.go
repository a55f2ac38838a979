package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	bus "github.com/busline/bus"
	"github.com/busline/bus/monitor"
)

// A monitor on a bus: errors go through it to the log, and its JSON
// endpoints (and the page, at the mount point) show the bus live.
func Example() {
	ctx := context.Background()
	m := monitor.New(nil)
	b := bus.New(&bus.Options{Stats: true, OnError: m.OnError(func(error) {})}) // in production: m.OnError(bus.LogTo(logger))
	defer b.Close(ctx)
	m.SetBus(b)
	_, _ = b.SubscribeWith("orders.*", func(context.Context, bus.Event) { panic("bug") }, &bus.SubscribeOptions{Name: "billing"})
	_ = b.Publish(ctx, "orders.created", 1)

	mux := http.NewServeMux()
	mux.Handle("/debug/busline/", m) // on an internal listener only
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var subs monitor.SubscriptionsDoc
	getJSON(srv.URL+"/debug/busline/subscriptions", &subs)
	for _, s := range subs.Subscriptions {
		fmt.Printf("%s %s %s delivered=%d panics=%d\n", s.Name, s.Pattern, s.Kind, s.Delivered, s.Panics)
	}
	var errs monitor.ErrorsDoc
	getJSON(srv.URL+"/debug/busline/errors", &errs)
	for _, e := range errs.Errors {
		fmt.Println(e.Level, e.Kind, e.Attrs["topic"], e.Attrs["panic"])
	}
	// Output:
	// billing orders.* sync delivered=1 panics=1
	// ERROR bus: handler panicked orders.created bug
}

func getJSON(url string, out any) {
	res, err := http.Get(url)
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		log.Fatal(err)
	}
}
