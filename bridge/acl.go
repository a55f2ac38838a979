package bridge

import (
	"fmt"
	"slices"
)

// aclCommands are the commands a bridge sends: PUBLISH for exports, the
// subscription commands and PING on the pub/sub connection. HELLO and
// AUTH, which go-redis sends when it connects, need no permission.
var aclCommands = []string{"+publish", "+subscribe", "+unsubscribe", "+psubscribe", "+punsubscribe", "+ping"}

// ACLRules returns the rules a Redis ACL user needs, beyond "on" and its
// password, to run a bridge with opts on a bus whose separator is sep, in
// the syntax of ACL SETUSER (one rule per string) and of ACL files:
//
//   - "resetchannels" then "&" + the escaped prefix + "*": PUBLISH and
//     SUBSCRIBE on every channel of the prefix, and nothing else;
//   - "&" + each glob the bridge subscribes to with PSUBSCRIBE: Redis
//     compares PSUBSCRIBE patterns literally with the channel rules, so
//     "&app:*" does not allow PSUBSCRIBE "app:orders.*";
//   - "resetkeys" and the commands, from "-@all": PUBLISH, SUBSCRIBE,
//     PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE and PING.
//
// It returns an error wrapping ErrInvalidOptions for a route New would
// reject. A rule holding a space cannot be written in an ACL file; use ACL
// SETUSER for those.
func ACLRules(opts *Options, sep rune) ([]string, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	var g globBuilder
	for i := 0; i < len(o.Prefix); i++ {
		g.literal(o.Prefix[i])
	}
	g.star()
	all := "&" + g.b.String()
	rules := []string{"resetchannels", all}
	var globs []string
	for i, r := range o.Routes {
		name, isPattern, err := RedisPattern(o.Prefix, r.Pattern, sep)
		if err != nil {
			return nil, fmt.Errorf("%w: route %d: %w", ErrInvalidOptions, i, err)
		}
		if isPattern && r.Direction.imports() && "&"+name != all {
			globs = append(globs, "&"+name)
		}
	}
	slices.Sort(globs)
	rules = append(rules, slices.Compact(globs)...)
	rules = append(rules, "resetkeys", "-@all")
	return append(rules, aclCommands...), nil
}
