package bustest

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/busline/bus"
)

// Limits of failure messages, so that a test that recorded a flood still
// fails with a message one can read.
const (
	shownEvents  = 5   // the last events listed in a wait's failure
	shownTopics  = 20  // the topics listed in an assertion's failure
	shownPayload = 120 // runes of one formatted payload
)

// waitError builds the error of a wait that gave up. cause is ErrTimeout
// when the wait's own timeout d ran out, or the cause of the caller's
// context; waited is how long it waited; want says what for, such as
// "for 3 events"; evs are the events recorded by then.
func (r *Recorder) waitError(cause error, d, waited time.Duration, want string, evs []bus.Event) error {
	if errors.Is(cause, ErrTimeout) {
		// The timeout, not the measured time, keeps the message stable.
		return fmt.Errorf("%w after %v waiting on %q %s; %s", ErrTimeout, d, r.rec.pattern, want, arrived(evs))
	}
	return fmt.Errorf("bustest: gave up after %v waiting on %q %s (%w); %s",
		waited.Round(time.Millisecond), r.rec.pattern, want, cause, arrived(evs))
}

// arrived describes the events recorded: how many, and the last few.
func arrived(evs []bus.Event) string {
	if len(evs) == 0 {
		return "no event arrived"
	}
	var b strings.Builder
	b.WriteString(plural(len(evs), "event"))
	b.WriteString(" arrived:")
	first := max(0, len(evs)-shownEvents)
	if first > 0 {
		fmt.Fprintf(&b, "\n\t... %s not shown", plural(first, "earlier event"))
	}
	for i := first; i < len(evs); i++ {
		b.WriteString("\n\t")
		b.WriteString(describe(i, evs[i]))
	}
	return b.String()
}

// describe formats event number i (from 0) as "#1 orders.created: payload",
// with the source and sequence number of a remote event.
func describe(i int, e bus.Event) string {
	s := fmt.Sprintf("#%d %s: %s", i+1, e.Topic, formatPayload(e.Payload))
	if e.Remote() {
		s += fmt.Sprintf(" (from %q, seq %d)", e.Meta.Source, e.Meta.Seq)
	}
	return s
}

// formatPayload formats a payload with its type: strings quoted, bytes as
// []byte("..."), other values in Go syntax (%#v), cut to shownPayload runes.
func formatPayload(v any) string {
	var s string
	switch v := v.(type) {
	case nil:
		return "nil"
	case string:
		s = fmt.Sprintf("%q", v)
	case []byte:
		s = fmt.Sprintf("[]byte(%q)", v)
	default:
		s = fmt.Sprintf("%#v", v)
	}
	if utf8.RuneCountInString(s) > shownPayload {
		s = string([]rune(s)[:shownPayload]) + "..."
	}
	return s
}

// formatTopics formats topics as [a b c], listing at most shownTopics.
func formatTopics(topics []string) string {
	if len(topics) <= shownTopics {
		return "[" + strings.Join(topics, " ") + "]"
	}
	return fmt.Sprintf("[%s ... and %d more]", strings.Join(topics[:shownTopics], " "), len(topics)-shownTopics)
}

// plural returns "1 event", "2 events", "0 events".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
