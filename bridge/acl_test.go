package bridge_test

import (
	"context"
	"strings"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestACLRulesClearSelectors applies ACLRules to an existing user whose
// Redis 7 selector allows everything: afterwards the selector is gone, and
// the user may neither touch keys nor publish outside the prefix, while a
// bridge on the prefix still works.
func TestACLRulesClearSelectors(t *testing.T) {
	srv := redistest.Start(t, nil)
	if _, err := srv.CLI("ACL", "SETUSER", "bridge", "on", ">s3cret", "(~* &* +@all)"); err != nil {
		t.Fatal(err)
	}
	o := srv.ClientOptions()
	o.Username, o.Password = "bridge", "s3cret"
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the selector, before the rules: %v", err)
	}

	routes := []bridge.Route{{Pattern: "orders.*"}}
	rules, err := bridge.ACLRules(&bridge.Options{Prefix: "app:", Routes: routes}, '.')
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI(append([]string{"ACL", "SETUSER", "bridge"}, rules...)...); err != nil {
		t.Fatal(err)
	}
	user, err := srv.CLI("ACL", "GETUSER", "bridge")
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(user, "selectors"); i < 0 || strings.Contains(user[i:], "+@all") {
		t.Errorf("ACL GETUSER after the rules still has a selector:\n%s", user)
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("SET after the rules: %v, want NOPERM", err)
	}
	if err := rdb.Publish(ctx, "other:x", "y").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("PUBLISH outside the prefix after the rules: %v, want NOPERM", err)
	}

	a := newInstance(t, rdb, testOptions(nil, routes...))
	rec := record(t, a.bus, "orders.*")
	if err := rdb.Publish(ctx, "app:orders.new", "1").Err(); err != nil {
		t.Fatalf("PUBLISH on the prefix: %v", err)
	}
	rec.waitFor(t, 1)
}
