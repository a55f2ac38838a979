package bridge_test

import (
	"context"
	"fmt"
	"log"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// A chat server routes a room while someone is in it: AddRoute when the
// first member joins, RemoveRoute when the last leaves. Nothing listens
// on port 1 here, so nothing is connected, and RouteReady would wait; a
// real server would call it before telling the member they joined.
func ExampleBridge_AddRoute() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	b := bus.New(nil)
	defer b.Close(context.Background())
	br, err := bridge.New(b, rdb, &bridge.Options{
		Prefix:  "chat:",
		OnError: func(error) {}, // the connection errors of this example
		Routes:  []bridge.Route{{Pattern: "lobby"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer br.Close(context.Background())

	rooms := map[string]bridge.RouteID{}
	for _, room := range []string{"room.go", "room.redis", "dm.*"} {
		id, err := br.AddRoute(bridge.Route{Pattern: room})
		if err != nil {
			log.Fatal(err)
		}
		rooms[room] = id
	}
	show := func() {
		for _, r := range br.Routes() {
			fmt.Printf("  route %d (index %d) %s\n", r.ID, r.Index, r.Pattern)
		}
		channels, globs := br.RedisSubscriptions()
		fmt.Println("  SUBSCRIBE", channels, "PSUBSCRIBE", globs)
	}
	fmt.Println("three rooms:")
	show()

	final, err := br.RemoveRoute(context.Background(), rooms["room.go"])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("room.go left after %d exports, %d imports:\n", final.Exported, final.Imported)
	show()
	// Output:
	// three rooms:
	//   route 0 (index 0) lobby
	//   route 1 (index -1) room.go
	//   route 2 (index -1) room.redis
	//   route 3 (index -1) dm.*
	//   SUBSCRIBE [chat:lobby chat:room.go chat:room.redis] PSUBSCRIBE [chat:dm.*]
	// room.go left after 0 exports, 0 imports:
	//   route 0 (index 0) lobby
	//   route 2 (index -1) room.redis
	//   route 3 (index -1) dm.*
	//   SUBSCRIBE [chat:lobby chat:room.redis] PSUBSCRIBE [chat:dm.*]
}
