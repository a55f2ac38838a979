package cloudevent

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"

	"github.com/busline/bus/bridge/internal/mac"
)

// # Signatures
//
// A signed event is the event Append writes, with an epoch
// (EpochAttribute, written after data), whose closing '}' Sign replaces
// by one last member and a new '}':
//
//	,"buslinesig":"<43 characters>"}
//
// the HMAC-SHA256, with the signing key, of the event as it was before
// (its bytes up to the signature member, then '}'), in base64url without
// padding. A verifier in any language takes the message's last SigSuffixLen
// bytes off, appends '}' and computes the HMAC: no canonical JSON is
// needed, and CloudEvents consumers that do not check it see two string
// extensions. Rejected designs: a MAC over canonical JSON (no SDK
// produces it, and a re-encoding SDK changes the bytes anyway); a
// signature anywhere in the object (a verifier would need a JSON parser
// to find and cut it).

const (
	// EpochAttribute is the extension attribute carrying the epoch of
	// the sender's run, 16 lowercase hex digits: the replay rules of
	// signed envelopes apply to it.
	EpochAttribute = "buslineepoch"
	// SigAttribute is the extension attribute carrying the signature.
	SigAttribute = "buslinesig"
)

// sigPrefix starts the signature member; sigText is the length of its
// value.
const (
	sigPrefix = `,"` + SigAttribute + `":"`
	sigText   = 43 // base64.RawURLEncoding.EncodedLen(mac.Size)
)

// SigSuffixLen is the length of the signature member and the closing
// brace that end a signed event.
const SigSuffixLen = len(sigPrefix) + sigText + len(`"}`)

var (
	// ErrUnsigned is returned by Verify for a message that does not end
	// with a signature member.
	ErrUnsigned = errors.New("no " + SigAttribute + " member at the end of the event")
	// ErrBadSignature is returned by Verify for a signature that does
	// not match the message: forged, altered, or of another key.
	ErrBadSignature = errors.New(SigAttribute + " does not match the event")
)

// closing is the '}' a verifier appends to the signed bytes.
var closing = []byte{'}'}

// Sign signs the event dst[start:], as Append wrote it (ending in '}'),
// with key, and returns the extended slice. It does not allocate when dst
// has room for SigSuffixLen-1 more bytes (and one key is in use). It is
// safe for concurrent use.
func Sign(dst []byte, start int, key []byte) []byte {
	m := mac.Get(key)
	m.H.Write(dst[start:])
	sum := m.H.Sum(m.Out[:0])
	dst = append(dst[:len(dst)-1], sigPrefix...)
	dst = base64.RawURLEncoding.AppendEncode(dst, sum)
	mac.Put(m)
	return append(dst, '"', '}')
}

// Verify checks that msg ends with the signature of key over the rest (see
// Sign), and returns ErrUnsigned or ErrBadSignature if not. Nothing may
// follow the closing brace, not even white space. It does not parse the
// event: Decode does, after. It does not allocate (one key in use) and is
// safe for concurrent use.
func Verify(msg, key []byte) error {
	body, sig, ok := cutSignature(msg)
	if !ok {
		return ErrUnsigned
	}
	m := mac.Get(key)
	m.H.Write(body)
	m.H.Write(closing)
	want := base64.RawURLEncoding.AppendEncode(m.Scratch[:0], m.H.Sum(m.Out[:0]))
	// Comparing the text rather than decoding sig keeps one encoding per
	// MAC (a decoder ignores newlines and the unused bits of the last
	// character).
	ok = hmac.Equal(want, sig)
	mac.Put(m)
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// cutSignature splits msg, if it ends with a signature member, into what
// precedes the member and the signature's text.
func cutSignature(msg []byte) (body, sig []byte, ok bool) {
	n := len(msg) - SigSuffixLen
	if n < 1 || string(msg[n:n+len(sigPrefix)]) != sigPrefix || string(msg[len(msg)-2:]) != `"}` {
		return nil, nil, false
	}
	return msg[:n], msg[n+len(sigPrefix) : len(msg)-2], true
}
