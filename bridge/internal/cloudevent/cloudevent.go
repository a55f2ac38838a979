// Package cloudevent is the bridge's CloudEvents format: CloudEvents 1.0
// in the structured-mode JSON event format (media type
// application/cloudevents+json), one event per message. It encodes by hand
// (no reflection, no allocation when the buffer has room) and decodes with
// its own strict scanner. It knows nothing of Redis; it is fuzzed on its
// own.
//
// # How a bus event maps to a CloudEvent
//
//	Attribute        Export                                  Import (bus.Meta)
//	---------------  --------------------------------------  ------------------------------------
//	specversion      "1.0"                                   must be "1.0"
//	id               channel + ":" + sequence number         Headers["id"]
//	source           the instance ID (a URI-reference)       Source
//	type             the topic                               Headers["type"]; a stream entry
//	                                                         without a topic field uses it as
//	                                                         the topic
//	subject          Headers["subject"], if set              Headers["subject"]
//	dataschema       Headers["dataschema"], if set           Headers["dataschema"]
//	time             export time, RFC 3339, nanoseconds, UTC Time
//	datacontenttype  the codec's content type, if any        ContentType
//	buslineseq       the sequence number, a decimal string   Seq; absent: 0, not sequence-checked
//	buslineepoch     signed only: the run, 16 hex digits     Epoch
//	buslinesig       signed only: the HMAC (see Sign), last  checked by Verify, not kept
//	other extensions the other headers                       Headers, by name
//	data             JSON payloads inline (content type      the payload: the JSON text, or the
//	                 application/json or */*+json); text/*   string's content for a non-JSON
//	                 payloads of valid UTF-8 as a string     content type
//	data_base64      any other payload                       the payload, decoded
//
// Extension attribute names must be lowercase ASCII letters and digits (the
// specification's MUST). On export a header name must also be at most 20
// characters (the specification's SHOULD, which some SDKs enforce): a
// header that does not fit is refused, not renamed, since any mapping
// (lowercasing, dropping characters) makes names collide and cannot be
// undone by the receiver; the event is then not exported (ErrAttribute).
// Headers named after an attribute the exporter sets itself (specversion,
// id, source, type, time, datacontenttype, data, buslineseq, buslineepoch,
// buslinesig) are ignored, so
// that an imported event's Meta can be published again as it is. Extension
// values are strings; on import JSON numbers and booleans become their JSON
// text ("42", "true") and null means absent, as the JSON format says.
// traceparent and tracestate, the distributed tracing extension, are
// headers like any other.
//
// Decoding is strict: the message must be one JSON object with valid UTF-8
// strings, no duplicate member, specversion "1.0", non-empty string id,
// source (a URI-reference) and type, an RFC 3339 time, at most one of data
// and data_base64 (standard base64 with padding), extension values of the
// CloudEvents type system and names of lowercase letters and digits. The
// size limit is the caller's.
package cloudevent

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// SpecVersion is the CloudEvents version this package speaks.
const SpecVersion = "1.0"

// MediaType is the media type of a structured-mode CloudEvent in JSON.
const MediaType = "application/cloudevents+json"

// SeqAttribute is the extension attribute carrying Busline's sequence
// number.
const SeqAttribute = "buslineseq"

// MaxExportName is the longest extension name Append accepts (see
// Validate): the specification recommends at most 20 characters.
const MaxExportName = 20

// Event is a CloudEvent as the bridge reads and writes it. See the package
// documentation for the mapping of each field.
type Event struct {
	ID     string
	Source string
	Type   string
	Time   time.Time // zero when absent
	// DataContentType is "" when absent: consumers then take the data as
	// JSON.
	DataContentType string
	// Seq is the buslineseq extension, 0 when absent.
	Seq uint64
	// Epoch is the buslineepoch extension, 0 when absent: the sender's
	// run, which signed events carry (see Sign).
	Epoch uint64
	// IDSeq makes Append write the id as ID + ":" + Seq in decimal, so
	// that an exporter numbering its events builds no id string. Decode
	// never sets it.
	IDSeq bool
	// Extensions are the other attributes, by name: the optional
	// subject and dataschema, and the extension attributes. Decode never
	// puts the attributes above in it; Append ignores the names of those
	// (see the package documentation).
	Extensions map[string]string
	// Data is the payload: JSON text when the content type is JSON (see
	// IsJSON), otherwise the bytes. After Decode it may alias the
	// message (the message must not be modified while Data is used). nil
	// when the event has no data.
	Data []byte
}

var (
	// ErrMalformed is wrapped by the errors of Decode for a message that
	// is not a valid structured-mode CloudEvent 1.0.
	ErrMalformed = errors.New("bridge: malformed CloudEvent")

	// ErrAttribute is wrapped by the errors of Validate: an event the
	// format cannot carry, such as a header whose name is not a valid
	// extension attribute name.
	ErrAttribute = errors.New("bridge: invalid CloudEvents attribute")
)

// reserved are the attributes and members an exporter sets itself:
// headers by these names are ignored on export.
func reserved(name string) bool {
	switch name {
	case "specversion", "id", "source", "type", "time", "datacontenttype", "data", SeqAttribute, EpochAttribute, SigAttribute:
		return true
	}
	return false
}

// ValidName reports whether name is a valid attribute name: one or more
// lowercase ASCII letters and digits.
func ValidName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// ValidSource reports whether s can be a source: a non-empty
// URI-reference (RFC 3986), checked by its characters: unreserved,
// reserved and well-formed percent escapes only.
func ValidSource(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Validate reports, wrapping ErrAttribute, what in ev Append cannot write
// as a valid CloudEvent: an empty id or type, a source that is not a
// URI-reference, a string that is not UTF-8, an extension name that is
// not 1..MaxExportName lowercase letters and digits, an empty subject or
// dataschema. Extensions named
// after attributes Append sets itself are not checked (they are ignored).
func (ev *Event) Validate() error {
	switch {
	case ev.ID == "" || !utf8.ValidString(ev.ID):
		return fmt.Errorf("%w: id %.40q", ErrAttribute, ev.ID)
	case !ValidSource(ev.Source):
		return fmt.Errorf("%w: source %.40q is not a URI-reference", ErrAttribute, ev.Source)
	case ev.Type == "" || !utf8.ValidString(ev.Type):
		return fmt.Errorf("%w: type %.40q", ErrAttribute, ev.Type)
	case !utf8.ValidString(ev.DataContentType):
		return fmt.Errorf("%w: datacontenttype %.40q not UTF-8", ErrAttribute, ev.DataContentType)
	}
	for k, v := range ev.Extensions {
		if reserved(k) {
			continue
		}
		if !ValidName(k) || len(k) > MaxExportName {
			return fmt.Errorf("%w: header %.40q is not a CloudEvents extension name (1..%d lowercase letters and digits)", ErrAttribute, k, MaxExportName)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: header %q value not UTF-8", ErrAttribute, k)
		}
		if v == "" && (k == "subject" || k == "dataschema") {
			return fmt.Errorf("%w: empty %s", ErrAttribute, k)
		}
	}
	return nil
}

// IsJSON reports whether a content type says JSON: empty (the JSON
// format's default), application/json or any type with the +json suffix,
// parameters and case ignored.
func IsJSON(contentType string) bool {
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	if mt == "" {
		return contentType == ""
	}
	return strings.EqualFold(mt, "application/json") ||
		len(mt) > 5 && strings.EqualFold(mt[len(mt)-5:], "+json") && strings.IndexByte(mt, '/') > 0
}

// isText reports whether a content type is text/*.
func isText(contentType string) bool {
	return len(contentType) >= 5 && strings.EqualFold(contentType[:5], "text/")
}
