// Package redisurl parses the Redis URLs given to Busline's programs
// (buscat and the examples) so that no password is ever printed: its
// errors show the URL with the password replaced by "xxxxx", and without
// its query, or no URL at all when it does not even parse.
//
// go-redis's redis.ParseURL is not enough on its own: the error of a URL
// that does not parse, such as "redis://alice:secret@host:badport", holds
// the whole URL, password included, and a program that prints it leaks the
// password to the terminal, its logs and whoever reads them.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Errors, wrapped by those of Parse.
var (
	// ErrBadURL: the URL does not parse, or go-redis refuses it.
	ErrBadURL = errors.New("bad Redis URL")
	// ErrSkipVerify: the URL turns TLS certificate verification off
	// (skip_verify=true), which lets anyone on the network path pose as
	// the server and read the password.
	ErrSkipVerify = errors.New("skip_verify=true turns off the verification of the server's TLS certificate")
)

// unparsable is said instead of a URL that does not parse: its error
// would quote it, and a password may be anywhere in it.
const unparsable = "it does not parse as a URL, which is not shown as it may hold a password; " +
	"the form is redis://user:password@host:port/db (rediss:// for TLS), " +
	"with the password's special characters percent-encoded (@ as %40, / as %2F, ? as %3F, # as %23, : as %3A)"

// Parse returns the go-redis options of raw, as redis.ParseURL does, and
// refuses a URL with skip_verify=true (ErrSkipVerify): see ParseInsecure.
// Its errors wrap ErrBadURL or ErrSkipVerify and never hold the password.
// It is safe for concurrent use.
func Parse(raw string) (*redis.Options, error) {
	opts, err := ParseInsecure(raw)
	if err != nil {
		return nil, err
	}
	if SkipsVerify(opts) {
		return nil, fmt.Errorf("%w: %s", ErrSkipVerify, Redact(raw))
	}
	return opts, nil
}

// ParseInsecure is Parse without the refusal of skip_verify=true: for a
// program whose user asked for it explicitly (buscat -insecure), which
// should say so (see SkipsVerify).
func ParseInsecure(raw string) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadURL, unparsable)
	}
	if misplacedUserinfo(u) {
		// "redis://alice:123/456@host" parses, as host "alice:123" and
		// path "/456@host": the password went into the host and the path,
		// which Redacted and go-redis's errors would show.
		return nil, fmt.Errorf("%w: %s", ErrBadURL, unparsable)
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		// Now that the URL parses, go-redis's errors name the scheme, the
		// path or a query option, never the user information.
		return nil, fmt.Errorf("%w %s: %v", ErrBadURL, Redact(raw), err)
	}
	return opts, nil
}

// SkipsVerify reports whether opts turn off the verification of the
// server's TLS certificate.
func SkipsVerify(opts *redis.Options) bool {
	return opts.TLSConfig != nil && opts.TLSConfig.InsecureSkipVerify
}

// Redact returns raw fit to print: quoted, with the password replaced by
// "xxxxx" and without the query, where options such as a misplaced
// "?password=" could be; a fixed text when raw does not parse as a URL.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || misplacedUserinfo(u) {
		return "(a URL that does not parse, not shown)"
	}
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	return fmt.Sprintf("%q", c.Redacted())
}

// misplacedUserinfo reports whether u has an "@" outside its user
// information: a password with an unencoded "/", "?" or "#" ends the
// authority early and lands in the path, the query or the fragment.
func misplacedUserinfo(u *url.URL) bool {
	return strings.Contains(u.Host, "@") || strings.Contains(u.Opaque, "@") ||
		strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@") || strings.Contains(u.Fragment, "@")
}
