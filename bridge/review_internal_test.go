package bridge

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestFailures checks what a connection loop reports of a run of failed
// attempts: the first, a change of cause (the local port of a network
// error is no change), at most one summary per interval, and after a
// success the first failure again.
func TestFailures(t *testing.T) {
	lost := func(port int) error {
		return chain(ErrDisconnected, "", &net.OpError{Op: "read", Net: "tcp",
			Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
			Addr:   &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6379}, Err: errors.New("connection reset by peer")})
	}
	refused := &connectError{addr: "127.0.0.1:6379", err: errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")}
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	f := failures{every: time.Second}
	for i, step := range []struct {
		err  error
		when time.Time
		want string // the report's start; "" for none
	}{
		{lost(50001), at(0), "bridge: pub/sub connection lost: read tcp 127.0.0.1:50001->127.0.0.1:6379"},
		{lost(50002), at(100), ""}, // another local port, the same cause
		{refused, at(200), "bridge: cannot connect to redis at 127.0.0.1:6379: dial tcp"},
		{refused, at(700), ""},
		{refused, at(1300), "bridge: still cannot connect to redis at 127.0.0.1:6379 after 5 attempts in 1s: dial tcp"},
		{refused, at(2000), ""},
		{refused, at(2400), "bridge: still cannot connect to redis at 127.0.0.1:6379 after 7 attempts in 2s: dial tcp"},
		{lost(50003), at(2500), "bridge: pub/sub connection lost: read tcp 127.0.0.1:50003"},
		{lost(50004), at(3600), "bridge: still failing after 9 attempts in 4s: pub/sub connection lost: read tcp 127.0.0.1:50004"},
	} {
		got := f.failed(step.err, step.when)
		switch {
		case step.want == "" && got != nil:
			t.Errorf("step %d: reported %q, want nothing", i, got)
		case step.want != "" && (got == nil || !strings.HasPrefix(got.Error(), step.want)):
			t.Errorf("step %d: reported %v, want %q...", i, got, step.want)
		case got != nil && !errors.Is(got, ErrDisconnected):
			t.Errorf("step %d: %q does not wrap ErrDisconnected", i, got)
		}
	}
	f.succeeded()
	if got := f.failed(refused, at(3700)); got != refused {
		t.Errorf("after a success: reported %v, want the failure itself", got)
	}
}
