package busprometheus_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	bus "github.com/busline/bus"
	"github.com/busline/bus/extra/busprometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A bus's collector in a registry: what a scrape of /metrics shows (served
// with promhttp.HandlerFor(reg, promhttp.HandlerOpts{})), read here with
// testutil.
func ExampleNewBusCollector() {
	b := bus.New(&bus.Options{Stats: true})
	defer b.Close(context.Background())
	_, err := b.SubscribeWith("orders.*", func(context.Context, bus.Event) {}, &bus.SubscribeOptions{Name: "mailer"})
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(busprometheus.NewBusCollector(b, nil))
	_ = b.Publish(context.Background(), "orders.created", 1)
	_ = b.Publish(context.Background(), "orders.paid", 2)

	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP busline_bus_published_total Events published (counted with bus.Options.Stats only).
# TYPE busline_bus_published_total counter
busline_bus_published_total 2
# HELP busline_subscription_delivered_total Events whose handling ended in the subscription's handler.
# TYPE busline_subscription_delivered_total counter
busline_subscription_delivered_total{subscription="mailer"} 2
`), "busline_bus_published_total", "busline_subscription_delivered_total")
	fmt.Println("as expected:", err == nil)
	n, _ := testutil.GatherAndCount(reg)
	fmt.Println("series:", n)
	// Output:
	// as expected: true
	// series: 17
}
