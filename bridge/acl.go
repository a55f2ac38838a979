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
// the syntax of ACL SETUSER (one rule per string) and of ACL files. They
// replace every permission of an existing user, so that applying them
// again after a change of opts leaves exactly what the bridge needs:
//
//   - "clearselectors": the selectors of Redis 7 ("(~* +@all)", say) are
//     permissions of their own, which the rules below would leave in place
//     on an existing user;
//   - "resetchannels", then for pub/sub routes "&" + the escaped prefix +
//     "*": PUBLISH and SUBSCRIBE on every channel of the prefix, and
//     nothing else;
//   - "&" + each glob the bridge subscribes to with PSUBSCRIBE: Redis
//     compares PSUBSCRIBE patterns literally with the channel rules, so
//     "&app:*" does not allow PSUBSCRIBE "app:orders.*". For a pattern
//     Redis cannot express, that is the wider glob of RedisPattern:
//     "{orders,users}.*" needs "&app:*.*", which also lets the user
//     receive every other channel that glob matches (New reports such
//     routes, wrapping ErrPatternWidened);
//   - "resetkeys", then for durable routes "~" + the escaped prefix +
//     "stream:*", "~" + the escaped prefix + "checkpoint:*" when Stream
//     routes import with the default Checkpointer, and "~" + the escaped
//     prefix + "dead:*" for the dead-letter streams of durable imports;
//   - the commands, from "-@all": PUBLISH, SUBSCRIBE, PSUBSCRIBE,
//     UNSUBSCRIBE, PUNSUBSCRIBE for pub/sub routes; XADD and XREVRANGE to
//     export durably; XREAD (and HGET, HSET for checkpoints) for Stream
//     imports; XGROUP CREATE, XREADGROUP, XACK and XAUTOCLAIM for Group
//     imports; XADD for the dead letters of durable imports, with
//     XPENDING, MULTI and EXEC for those of Group imports; PING always;
//   - with Options.Replies, "&" + the glob of the reply channels,
//     Prefix + "_INBOX." + InstanceID + ".*", which needs the InstanceID
//     (ACLRules returns an error wrapping ErrInvalidOptions without one).
//
// On a Redis Cluster the user also needs the commands of sharded pub/sub and
// those go-redis uses to learn the layout: see ClusterACLRules.
//
// It returns an error wrapping ErrInvalidOptions for a route New would
// reject. A rule holding a space cannot be written in an ACL file; use ACL
// SETUSER for those.
//
// # Routes added at run time
//
// The rules are computed from the routes of opts when ACLRules is called:
// it knows nothing of the routes a bridge adds later with
// [Bridge.AddRoute]. An exact pub/sub route on the prefix needs nothing
// more ("&" + prefix + "*" covers its channel, sharded or not), but a
// pattern import route needs its glob, the first durable route keys and
// commands the rules did not grant, and the first pub/sub route of a
// bridge that had only durable ones the prefix's channels and the pub/sub
// commands. Before adding such a route,
// compute the rules again from every route the bridge will have (those of
// Options.Routes and those to add) and apply them (on a cluster, with
// ClusterACLRules, on every node): they replace the user's permissions,
// so applying them again leaves exactly what the bridge needs. A route whose subscription Redis refuses anyway is reported
// alone: RouteReady and Ready return an error wrapping [ErrSubscribe]
// naming the refused command, the other routes keep receiving on the same
// connection, and the refused subscription is asked for again (a sharded
// one with backoff, a classic one at each change of the routes and on
// each new connection) until Redis accepts it or the route is removed.
//
// # Security
//
// The bridge works over TLS (a rediss:// URL and a tls.Config with client
// certificates in redis.Options) and with an ACL user limited to the
// prefix's channels. [ACLRules] returns the rules such a user needs:
//
//	ACL SETUSER app-bridge on >password clearselectors resetchannels &app:* &app:orders.*
//	    resetkeys -@all +publish +subscribe +unsubscribe +psubscribe +punsubscribe +ping
//
// "&app:*" lets the user PUBLISH and SUBSCRIBE on every channel of the
// prefix. PSUBSCRIBE is different: Redis 7 compares a PSUBSCRIBE pattern
// literally with the channel rules, so "&app:*" allows PSUBSCRIBE "app:*"
// but not PSUBSCRIBE "app:orders.*": every glob the bridge subscribes to
// (see [RedisPattern] and [Bridge.RedisSubscriptions]) must appear verbatim.
// A refused subscription makes Ready return an error wrapping [ErrSubscribe]
// (NOPERM), and a refused export is counted in Stats.ExportRejected and
// reported wrapping [ErrPublish].
//
// With Options.SigningKey, envelopes are signed with HMAC-SHA256 over the
// channel and the message, and enveloped routes accept only envelopes signed
// with the same key: unsigned, forged, altered or re-routed messages, and
// messages without an envelope, are dropped, counted
// (Stats.SignatureRejected) and reported wrapping [ErrSignature]. A bridge
// without a key accepts signed envelopes unchecked, so that a key can be
// rolled out to senders first. Raw routes are never signed: protect them
// with ACLs.
func ACLRules(opts *Options, sep rune) ([]string, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	prefix := func(suffix string) string {
		var g globBuilder
		for i := 0; i < len(o.Prefix); i++ {
			g.literal(o.Prefix[i])
		}
		for i := 0; i < len(suffix); i++ {
			g.literal(suffix[i])
		}
		g.star()
		return g.b.String()
	}
	all := "&" + prefix("")
	var pubsub, durableExport, streamImport, groupImport bool
	var globs []string
	for i, r := range o.Routes {
		name, isPattern, err := RedisPattern(o.Prefix, r.Pattern, sep)
		if err != nil {
			return nil, chain(ErrInvalidOptions, fmt.Sprintf("route %d", i), err)
		}
		switch r.Delivery {
		case PubSub:
			pubsub = true
			if isPattern && r.Direction.imports() && "&"+name != all {
				globs = append(globs, "&"+name)
			}
		default:
			durableExport = durableExport || r.Direction.exports()
			streamImport = streamImport || r.Delivery == Stream && r.Direction.imports()
			groupImport = groupImport || r.Delivery == Group && r.Direction.imports()
		}
	}
	switch g, err := replyGlob(&o, sep); {
	case err != nil:
		return nil, err
	case g != "":
		pubsub = true
		globs = append(globs, "&"+g)
	}
	rules := []string{"clearselectors", "resetchannels"}
	if pubsub {
		rules = append(rules, all)
		slices.Sort(globs)
		rules = append(rules, slices.Compact(globs)...)
	}
	rules = append(rules, "resetkeys")
	if durableExport || streamImport || groupImport {
		rules = append(rules, "~"+prefix("stream:"))
	}
	if streamImport && o.Checkpointer == nil {
		rules = append(rules, "~"+prefix("checkpoint:"))
	}
	if streamImport || groupImport {
		rules = append(rules, "~"+prefix("dead:"))
	}
	rules = append(rules, "-@all")
	add := func(cmds ...string) {
		for _, c := range cmds {
			if !slices.Contains(rules, c) {
				rules = append(rules, c)
			}
		}
	}
	if pubsub {
		add(aclCommands...)
	}
	if durableExport {
		add("+xadd", "+xrevrange")
	}
	if streamImport {
		add("+xread", "+xrevrange")
		if o.Checkpointer == nil {
			add("+hget", "+hset")
		}
	}
	if groupImport {
		add("+xgroup|create", "+xreadgroup", "+xack", "+xautoclaim")
	}
	if streamImport || groupImport {
		add("+xadd") // dead letters
	}
	if groupImport {
		add("+xpending", "+multi", "+exec")
	}
	add("+ping")
	return rules, nil
}

// ClusterACLRules returns the rules a bridge's ACL user needs on every node
// of a Redis Cluster, on top of ACLRules: sharded pub/sub (SPUBLISH,
// SSUBSCRIBE, SUNSUBSCRIBE) and the commands go-redis sends to learn the
// cluster's layout (CLUSTER SLOTS, CLUSTER SHARDS, COMMAND, READONLY).
func ClusterACLRules() []string {
	return []string{"+spublish", "+ssubscribe", "+sunsubscribe", "+cluster|slots", "+cluster|shards", "+command", "+readonly"}
}
