package bridge

import (
	"fmt"
	"maps"
	"strings"

	bus "github.com/busline/bus"
)

// Request/reply across instances (Options.Replies).
//
// A request is a local event whose Meta.ReplyTo is a topic of the bus's
// inbox, "_INBOX.<bus id>.<n>" (see bus.Request). When the request's route
// exports it, the bridge puts in the envelope's header ReplyHeader (on a
// CloudEvents route, the extension attribute of that name) the
// channel on which this instance takes its replies: Prefix + "_INBOX." +
// InstanceID + "." + "<bus id>.<n>". The instance ID makes the channels of
// one instance one glob known in advance (for the ACL rules), the bus ID
// and the number make each request's channel its own, so that a responder
// in any language just PUBLISHes its reply there.
//
// The receiving bridge turns the header back into Meta.ReplyTo (the
// channel without the prefix) and a local responder's Reply publishes the
// reply on that topic; the route Replies adds, "_INBOX.**" (Export),
// exports it like any event, unnumbered, since it is the only message of
// its channel. The requesting bridge imports its own channels through the
// other route Replies adds, "_INBOX.<InstanceID>.**" (Import, PSUBSCRIBE),
// and publishes the reply on the topic "_INBOX.<InstanceID>.<bus id>.<n>",
// which the bus's inbox subscription hands to the waiting request.
//
// Replies made in this process never reach the bridge: bus.Reply hands
// them to their request directly. Imported replies are remote events, which
// the bridge never exports again.

// ReplyHeader is the envelope header (on CloudEvents routes, the
// extension attribute) that carries the reply channel of a
// request exported by a bridge with Options.Replies: the Redis channel on
// which the requesting instance waits for the reply. A responder that is
// not a bridge answers with a PUBLISH on it, of an envelope or (on a
// bridge without SigningKey) of the raw reply bytes, which arrive as a
// []byte payload.
const ReplyHeader = "replyto"

// inboxRoot is the first segment of reply topics, as in package bus.
const inboxRoot = "_INBOX"

// addReplyRoutes adds the two routes of Options.Replies to the routes to
// compile, after the user's, so that those take precedence.
func (br *Bridge) addReplyRoutes(sep rune) error {
	if !br.cfg.Replies {
		return nil
	}
	inbox := inboxRoot + string(sep) + br.id
	if err := bus.ValidateTopic(inbox, sep); err != nil {
		return fmt.Errorf("%w: Replies: InstanceID %q is not a valid topic segment: %w", ErrInvalidOptions, br.id, err)
	}
	br.cfg.Routes = append(br.cfg.Routes,
		Route{Pattern: inbox + string(sep) + "**", Direction: Import},
		Route{Pattern: inboxRoot + string(sep) + "**", Direction: Export, reply: true})
	return nil
}

// replyGlob returns the glob of the reply channels of a bridge configured
// by o, for ACLRules: "" without Replies.
func replyGlob(o *Options, sep rune) (string, error) {
	if !o.Replies {
		return "", nil
	}
	if o.InstanceID == "" {
		return "", fmt.Errorf("%w: Replies: the ACL rule of the reply channels needs the InstanceID", ErrInvalidOptions)
	}
	name, _, err := RedisPattern(o.Prefix, inboxRoot+string(sep)+o.InstanceID+string(sep)+"**", sep)
	return name, err
}

// requestHeaders returns the headers to export a request with: m's and
// ReplyHeader. It allocates a map, for requests only.
func (br *Bridge) requestHeaders(m *bus.Meta) map[string]string {
	h := make(map[string]string, len(m.Headers)+1)
	maps.Copy(h, m.Headers)
	sep := string(br.bus.Separator())
	to := m.ReplyTo
	// A reply topic of the local bus, "_INBOX.<bus id>.<n>", gets the
	// instance ID in front of the bus ID; any other is sent as it is.
	if rest, ok := strings.CutPrefix(to, inboxRoot+sep); ok && strings.Count(rest, sep) == 1 {
		to = inboxRoot + sep + br.id + sep + rest
	}
	h[ReplyHeader] = br.cfg.Prefix + to
	return h
}

// replyTopic returns the Meta.ReplyTo of an imported event whose headers
// are h: the topic of the channel of its ReplyHeader, or "" when it has
// none, when that channel is not under Options.Prefix, or without
// Options.Replies (the bridge could not send a reply back).
func (br *Bridge) replyTopic(h map[string]string) string {
	if !br.cfg.Replies || h == nil {
		return ""
	}
	to, ok := strings.CutPrefix(h[ReplyHeader], br.cfg.Prefix)
	if !ok {
		return ""
	}
	return to
}
