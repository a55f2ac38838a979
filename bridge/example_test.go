package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// What the bridge subscribes to on Redis for some bus patterns.
func ExampleRedisPattern() {
	for _, pattern := range []string{"orders.created", "orders.*", "orders.{eu,us}.paid", "logs.[abc]"} {
		name, isPattern, err := bridge.RedisPattern("app:", pattern, '.')
		if err != nil {
			log.Fatal(err)
		}
		cmd := "SUBSCRIBE"
		if isPattern {
			cmd = "PSUBSCRIBE"
		}
		fmt.Printf("%-20s %s %s\n", pattern, cmd, name)
	}
	// Output:
	// orders.created       SUBSCRIBE app:orders.created
	// orders.*             PSUBSCRIBE app:orders.*
	// orders.{eu,us}.paid  PSUBSCRIBE app:orders.*.paid
	// logs.[abc]           PSUBSCRIBE app:logs.?
}

// The ACL rules of a Redis user for a bridge: the PSUBSCRIBE glob must be
// listed verbatim besides the prefix.
func ExampleACLRules() {
	rules, err := bridge.ACLRules(&bridge.Options{
		Prefix: "app:",
		Routes: []bridge.Route{
			{Pattern: "orders.**"},
			{Pattern: "alerts", Direction: bridge.Export},
		},
	}, '.')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ACL SETUSER app-bridge on >password " + strings.Join(rules, " "))
	// Output:
	// ACL SETUSER app-bridge on >password clearselectors resetchannels &app:* &app:orders.* resetkeys -@all +publish +subscribe +unsubscribe +psubscribe +punsubscribe +ping
}

// ACLRules knows only the routes it is given. Before adding a route at
// run time that the rules did not cover, compute them again with every
// route the bridge will have and apply them (ACL SETUSER replaces the
// user's permissions). Here an exact route on the prefix needs nothing
// more, a pattern import route needs its glob, and a Group import route
// its stream keys and commands.
func ExampleACLRules_routesAddedLater() {
	opts := &bridge.Options{Prefix: "app:", Routes: []bridge.Route{{Pattern: "orders.created"}}}
	before, err := bridge.ACLRules(opts, '.')
	if err != nil {
		log.Fatal(err)
	}
	later := []bridge.Route{
		{Pattern: "orders.paid", Direction: bridge.Import},
		{Pattern: "users.*", Direction: bridge.Import},
		{Pattern: "emails", Direction: bridge.Import, Delivery: bridge.Group},
	}
	// The routes of the options, and those AddRoute will add.
	all := *opts
	all.Routes = append(slices.Clone(opts.Routes), later...)
	after, err := bridge.ACLRules(&all, '.')
	if err != nil {
		log.Fatal(err)
	}
	var added []string
	for _, r := range after {
		if !slices.Contains(before, r) {
			added = append(added, r)
		}
	}
	fmt.Println("ACL SETUSER app-bridge " + strings.Join(after, " "))
	fmt.Println("new:", strings.Join(added, " "))
	// Output:
	// ACL SETUSER app-bridge clearselectors resetchannels &app:* &app:users.* resetkeys ~app:stream:* ~app:dead:* -@all +publish +subscribe +unsubscribe +psubscribe +punsubscribe +ping +xgroup|create +xreadgroup +xack +xautoclaim +xadd +xpending +multi +exec
	// new: &app:users.* ~app:stream:* ~app:dead:* +xgroup|create +xreadgroup +xack +xautoclaim +xadd +xpending +multi +exec
}

// A typed codec decodes into the Go type local publishers use.
func ExampleJSON() {
	type Order struct{ ID int }
	codec := bridge.JSON[*Order]()
	data, contentType, err := codec.Encode(&Order{ID: 42})
	if err != nil {
		log.Fatal(err)
	}
	v, err := codec.Decode(data, contentType)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s %T %d\n", data, contentType, v, v.(*Order).ID)
	// Output:
	// {"ID":42} application/json *bridge_test.Order 42
}

// A raw route for plain Redis clients' text: Text carries strings both
// ways, and refuses other payloads, so that a handler gets a string
// whether the event was published here or by redis-cli on another host.
func ExampleText() {
	codec := bridge.Text()
	data, _, err := codec.Encode("hello")
	if err != nil {
		log.Fatal(err)
	}
	v, err := codec.Decode(data, "") // raw messages carry no content type
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%T %q\n", v, v)
	_, _, err = codec.Encode([]byte("hello"))
	fmt.Println(errors.Is(err, bus.ErrPayloadType), err)
	// Output:
	// string "hello"
	// true payload of type []byte, want string: use Codec: bridge.Bytes() for bytes
}

// Two instances mirror "orders.**" through Redis. (Not run: it needs a
// Redis server; examples/minimal is the complete program, tested.) run
// returns every error, those of the deferred Close calls included.
func ExampleNew() {
	run := func(ctx context.Context) (err error) {
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer func() { err = errors.Join(err, rdb.Close()) }() // the bridge never closes your client

		// The bridge's Close sends what the outbox holds, and says what
		// it could not send: give it time of its own.
		closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancelClose()
		b := bus.New(nil)
		defer func() { err = errors.Join(err, b.Close(closeCtx)) }()
		br, err := bridge.New(b, rdb, &bridge.Options{
			Prefix: "app:",
			Routes: []bridge.Route{{Pattern: "orders.**"}},
		})
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, br.Close(closeCtx)) }() // before b.Close

		readyCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := br.Ready(readyCtx); err != nil {
			return err // "... cannot connect to redis at ..." with a wrong address
		}
		_, err = b.Subscribe("orders.**", func(_ context.Context, e bus.Event) {
			if e.Remote() {
				fmt.Printf("%s from %s: %v\n", e.Topic, e.Meta.Source, e.Payload)
			}
		})
		if err != nil {
			return err
		}
		return b.Publish(ctx, "orders.created", "order 1") // also sent to the other instances
	}
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// Routes and Connections say, per route and per use of Redis, what a
// monitoring page shows. Nothing listens on port 1 here, so nothing is
// connected; a real bridge fills in the counters and the states.
func ExampleBridge_Routes() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	b := bus.New(nil)
	defer b.Close(context.Background())
	br, err := bridge.New(b, rdb, &bridge.Options{
		Prefix:     "app:",
		InstanceID: "example",
		OnError:    func(error) {}, // the connection errors of this example
		Routes: []bridge.Route{
			{Pattern: "chat.*"},
			{Pattern: "orders.created", Direction: bridge.Export},
			{Pattern: "jobs", Delivery: bridge.Stream, Direction: bridge.Import},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer br.Close(context.Background())
	for _, r := range br.Routes() {
		fmt.Printf("route %d %-14s %-6v channel=%q glob=%v stream=%q exported=%d imported=%d\n",
			r.Index, r.Pattern, r.Direction, r.Channel, r.Glob, r.Stream, r.Exported, r.Imported)
	}
	for _, c := range br.Connections() {
		fmt.Printf("%-13v node=%s route=%q\n", c.Kind, c.Node, c.Route)
	}
	// Output:
	// route 0 chat.*         both   channel="app:chat.*" glob=true stream="" exported=0 imported=0
	// route 1 orders.created export channel="app:orders.created" glob=false stream="" exported=0 imported=0
	// route 2 jobs           import channel="" glob=false stream="app:stream:jobs" exported=0 imported=0
	// pubsub        node=127.0.0.1:1 route=""
	// stream reader node=127.0.0.1:1 route="jobs"
	// exporter      node=127.0.0.1:1 route=""
}

// How OnError hears of a flood: the first report of each reason in a
// second comes with its details, the rest are summed up in a DropError
// (and counted in Stats.ReportsHeld). A handler can tell replays, gaps
// and duplicates apart with errors.Is.
func ExampleDropError() {
	for _, err := range []error{
		&bridge.DropError{Err: bridge.ErrGap, Count: 99998},
		&bridge.DropError{Err: bridge.ErrReplay, Count: 12},
		&bridge.DropError{Err: bridge.ErrDuplicate, Count: 1},
	} {
		fmt.Println(err, errors.Is(err, bridge.ErrReplay))
	}
	// Output:
	// bridge: sequence gap: 99998 more events missing (see Stats.GapEvents) false
	// bridge: replayed envelope: 12 more events dropped (see Stats.Replayed) true
	// bridge: duplicate event: 1 more event dropped (see Stats.Duplicates) false
}
