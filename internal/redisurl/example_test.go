package redisurl_test

import (
	"fmt"

	"github.com/busline/bus/internal/redisurl"
)

func ExampleParse() {
	_, err := redisurl.Parse("redis://alice:secret@host:6379/x")
	fmt.Println(err)
	_, err = redisurl.Parse("rediss://alice:secret@host?skip_verify=true")
	fmt.Println(err)
	// Output:
	// bad Redis URL "redis://alice:xxxxx@host:6379/x": redis: invalid database number: "x"
	// skip_verify=true turns off the verification of the server's TLS certificate: "rediss://alice:xxxxx@host"
}
