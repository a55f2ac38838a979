// Command buscat is a terminal client for the topics a Busline bridge
// mirrors on Redis: it prints their events, publishes events, and shows who
// listens.
//
// Topic T is the Redis channel PREFIX+T, where PREFIX (-prefix) is empty by
// default, as bridge.Options.Prefix is: give buscat the prefix of the
// bridges it talks to. Plain Redis clients (redis-cli, redis-py) take part
// as they are: sub prints what they publish, and pub sends the payload's
// bytes exactly, as redis-cli PUBLISH does. pub -envelope sends Busline's
// binary envelope instead, which bridges decode (source, sequence number,
// content type) and plain clients see as binary bytes.
//
// Usage:
//
//	buscat [flags] sub PATTERN...        print events as JSON lines until Ctrl-C
//	buscat [flags] pub TOPIC [PAYLOAD]   publish one event (PAYLOAD from stdin when omitted)
//	buscat [flags] stats                 channels of the prefix and their subscribers
//
// Flags may come before or after the command:
//
//	-url URL      Redis server (default $REDIS_URL, else redis://127.0.0.1:6379);
//	              rediss:// for TLS, redis://user:password@host:port/db for ACL users
//	-cacert FILE  rediss://: verify the server's certificate with the CA
//	              certificates of FILE (PEM) instead of the system's
//	-cert FILE    rediss://: present the client certificate of FILE (PEM),
//	-key FILE     with its private key, for servers that require one
//	              (tls-auth-clients yes): give both
//	-insecure     rediss://: do not verify the server's certificate; also
//	              needed to accept skip_verify=true in the URL. Anyone on the
//	              network path can then pose as the server and read the
//	              password: buscat warns on stderr
//	-prefix P     channel prefix of the bridged topics (default empty): with
//	              -prefix app:, topic "orders.created" is channel "app:orders.created"
//	-envelope     pub: send Busline envelopes, as a bridge's enveloped routes
//	              do, instead of the payload's bytes alone
//	-type T       pub -envelope: the envelope's content type: auto (default),
//	              text, json, bytes
//	-raw          sub: do not decode envelopes, print them as their bytes;
//	              pub: accepted and changes nothing (raw is the default)
//	-lines        pub: publish each line of the payload as its own event
//	-json         stats: print JSON instead of a table
//	-h            print this help
//
// buscat never prints a password: errors show the URL with its password
// as "xxxxx" (and without its query), or no URL at all when it does not
// parse. A URL with skip_verify=true is refused (exit status 2) unless
// -insecure is given.
//
// A TOPIC or PATTERN that already starts with a non-empty prefix, as in
// `buscat -prefix app: pub app:notifications`, gets a warning on stderr:
// buscat adds the prefix, so that event goes to the channel
// "app:app:notifications".
//
// # sub
//
// buscat sub subscribes to the bus PATTERNs (the syntax of bus.Subscribe:
// "orders.*", "orders.**", "{a,b}.x") through a bridge with one import
// route per pattern, and prints each event as one JSON object per line:
//
//	{"topic":"orders.created","source":"3f1c0a9e2b7d4c11","seq":7,"time":"2026-11-25T13:40:00.123456789Z","content_type":"application/json","encoding":"json","payload":{"id":42}}
//	{"topic":"notifications","source":"redis","seq":0,"time":null,"encoding":"text","payload":"hi"}
//
// source, seq and time come from the sender's envelope. A message without
// an envelope (from a raw route or a plain Redis client) has source "redis",
// seq 0 and time null. encoding says how to read payload: "json" (the
// payload is that JSON value: its content type says JSON, or it has none and
// is a JSON object or array), "text" (a string: valid UTF-8 without control
// characters other than tab and newlines), or "base64" (anything else, in
// standard base64). Enveloped and raw messages are both understood on the
// same channel. With -raw the envelope is not decoded either: an enveloped
// message is printed as its bytes, in base64, with source "redis".
//
// A line "buscat: subscribed: ..." on stderr says when the subscriptions are
// confirmed by Redis; messages published before are not received (Redis
// pub/sub keeps nothing). Lost connections are reported on stderr, and
// buscat subscribes again by itself. Events of all patterns are printed in
// the order they arrive.
//
// # pub
//
// buscat pub publishes PAYLOAD, or all of stdin, to TOPIC as one event;
// with -lines, each line of it as an event of its own, in order.
//
// By default the message is the payload's bytes exactly, with no envelope,
// as redis-cli PUBLISH sends it: plain Redis clients get the text, and
// bridges deliver it as an event of source "redis" (bridge.RawSource), with
// the payload type of the route's codec (a string with bridge.Text). -raw,
// which used to select this, is still accepted and changes nothing.
//
// With -envelope the event is enveloped like a bridge's: bridges deliver it
// with this buscat's instance ID as its source, sequence numbers from 1
// and a content type chosen by -type: auto picks json for a JSON object or
// array, text for valid UTF-8 without control characters other than tab
// and newlines, bytes otherwise. Plain Redis clients see it as binary
// bytes. -type without -envelope is a usage error, as raw messages carry
// no content type, and so is -envelope with -raw.
//
// Once Redis has taken every event, pub prints, for each event in order,
// the number of clients that received it, as redis-cli PUBLISH does:
// "(integer) 2". It is Redis's reply to the event's PUBLISH; "(integer) 0"
// means that nobody subscribes to the channel (a wrong -prefix, say).
//
// An empty stdin is refused (exit status 1), since it is more often a
// mistake than an intent; an empty PAYLOAD argument ("") publishes an empty
// event. With -lines, a payload without any line is refused too.
//
// # stats
//
// buscat stats lists the channels of the prefix that have subscribers
// (PUBSUB CHANNELS), with their number of subscribers (PUBSUB NUMSUB), and
// the number of pattern subscriptions (PUBSUB NUMPAT). Redis counts
// patterns for the whole server and cannot list them, so the pattern count
// is not limited to the prefix.
//
// # Exit status
//
// 0 on success, also for sub stopped by SIGINT (Ctrl-C) or SIGTERM; 1 for
// errors at run time, such as an unreachable Redis, a refused command or an
// empty stdin for pub; 2 for usage errors: an unknown command or flag, a
// bad URL, topic or pattern, a missing argument, -type without -envelope.
// Errors are one line on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Exit statuses.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// defaultURL is the Redis server when neither -url nor REDIS_URL says.
const defaultURL = "redis://127.0.0.1:6379"

// usageError is an error in the command line: main exits with exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a *usageError.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// config holds the flags common to every command and those of each
// command; a command ignores the flags that are not its own.
type config struct {
	url    string
	prefix string
	raw    bool // sub: print envelopes undecoded; pub: the default anyway

	cacert, cert, key string // TLS files
	insecure          bool   // do not verify the server's certificate

	envelope bool   // pub
	typ      string // pub -envelope
	typeSet  bool   // pub: -type was given
	lines    bool   // pub
	json     bool   // stats

	stdin          io.Reader
	stdout, stderr io.Writer
}

const usageText = `buscat: a terminal client for the Redis channels of Busline bridges.
Topic T is the Redis channel PREFIX+T; -prefix is empty by default, as in package
bridge. Plain Redis clients (redis-cli, redis-py) take part as they are: sub prints
what they publish, and pub sends the payload's bytes exactly, as redis-cli PUBLISH
does. pub -envelope sends Busline's binary envelope instead (source, sequence number,
content type from -type), which bridges decode and plain clients see as bytes.

usage: buscat [flags] sub PATTERN...       print events as JSON lines until Ctrl-C
       buscat [flags] pub TOPIC [PAYLOAD]  publish an event (PAYLOAD from stdin when omitted),
                                           print its number of receivers: (integer) N
       buscat [flags] stats                channels of the prefix and their subscribers

flags (before or after the command):
`

const usageTail = `
exit status: 0 success (also sub stopped by Ctrl-C), 1 runtime error, 2 usage error.
`

func main() {
	// go-redis logs every failed dial by itself; buscat reports what
	// matters in one line.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv("REDIS_URL"))
	stop()
	os.Exit(code)
}

// run is buscat: it runs the command in args and returns the exit status.
// envURL is the value of REDIS_URL. Errors are written to stderr as one
// line.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, envURL string) int {
	cfg := &config{url: defaultURL, typ: "auto", stdin: stdin, stdout: stdout, stderr: stderr}
	if envURL != "" {
		cfg.url = envURL
	}
	err := dispatch(ctx, cfg, args)
	var usage *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &usage):
		warn(cfg, "buscat: %v (buscat -h for help)\n", oneLine(err))
		return exitUsage
	default:
		warn(cfg, "buscat: %v\n", oneLine(err))
		return exitRuntime
	}
}

// dispatch parses args and runs the command.
func dispatch(ctx context.Context, cfg *config, args []string) error {
	fs := cfg.flagSet()
	pos, err := parse(fs, args, cfg.stdout)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { cfg.typeSet = cfg.typeSet || f.Name == "type" })
	if len(pos) == 0 {
		return usagef("no command: want sub, pub or stats")
	}
	cmd, pos := pos[0], pos[1:]
	switch cmd {
	case "sub":
		return sub(ctx, cfg, pos)
	case "pub":
		return pub(ctx, cfg, pos)
	case "stats":
		return stats(ctx, cfg, pos)
	case "help":
		return printUsage(fs, cfg.stdout)
	}
	return usagef("unknown command %q: want sub, pub or stats", cmd)
}

// flagSet returns the flags of every command, writing into cfg.
func (cfg *config) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("buscat", flag.ContinueOnError)
	fs.StringVar(&cfg.url, "url", cfg.url, "Redis `URL` (also $REDIS_URL)")
	fs.StringVar(&cfg.cacert, "cacert", "", "rediss://: verify the server's certificate with the CA certificates of `file` (PEM)")
	fs.StringVar(&cfg.cert, "cert", "", "rediss://: present the client certificate of `file` (PEM), with -key")
	fs.StringVar(&cfg.key, "key", "", "rediss://: the private key of -cert, in `file` (PEM)")
	fs.BoolVar(&cfg.insecure, "insecure", false, "rediss://: do not verify the server's certificate (also needed for skip_verify=true in the URL)")
	fs.StringVar(&cfg.prefix, "prefix", cfg.prefix, "channel `prefix` of the bridged topics: topic T is channel prefix+T")
	fs.BoolVar(&cfg.envelope, "envelope", false, "pub: send Busline envelopes (source, sequence, content type) instead of the payload's bytes alone")
	fs.StringVar(&cfg.typ, "type", cfg.typ, "pub -envelope: the envelope's content `type`: auto, text, json or bytes")
	fs.BoolVar(&cfg.raw, "raw", false, "sub: print envelopes as their bytes, undecoded; pub: no effect, raw is the default")
	fs.BoolVar(&cfg.lines, "lines", false, "pub: publish each line of the payload as an event")
	fs.BoolVar(&cfg.json, "json", false, "stats: print JSON instead of a table")
	// The flag package would print the usage on every error; buscat prints
	// one line instead, and the usage only for -h, on stdout.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses flags anywhere in args, as in `buscat sub -raw orders.*`, and
// returns the other arguments. Everything after "--" is an argument. For -h
// it writes the help to out and returns flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string, out io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				if err := printUsage(fs, out); err != nil {
					return nil, err
				}
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printUsage writes the help to w.
func printUsage(fs *flag.FlagSet, w io.Writer) error {
	var flags strings.Builder
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if _, err := fmt.Fprint(w, usageText, flags.String(), usageTail); err != nil {
		return fmt.Errorf("writing the help: %w", err)
	}
	return nil
}

// warnPrefixed warns on stderr when name, a topic or pattern, already
// starts with the prefix, which buscat adds: `buscat -prefix app: pub
// app:notifications` publishes to the channel "app:app:notifications".
func warnPrefixed(cfg *config, what, name string) {
	if cfg.prefix == "" || !strings.HasPrefix(name, cfg.prefix) {
		return
	}
	warn(cfg, "buscat: warning: %s %q starts with the prefix %q, which buscat adds, making it %q on Redis; did you mean %s %q?\n",
		what, name, cfg.prefix, cfg.prefix+name, what, strings.TrimPrefix(name, cfg.prefix))
}

// warn writes a diagnostic to stderr. Its write error is dropped on
// purpose: stderr is where errors would be reported, so there is nowhere
// left to report that one.
func warn(cfg *config, format string, args ...any) {
	_, _ = fmt.Fprintf(cfg.stderr, format, args...)
}

// closeWith calls close and adds its error, if any, to *err, saying what
// failed to close: for defers.
func closeWith(err *error, what string, close func() error) {
	if cerr := close(); cerr != nil {
		*err = errors.Join(*err, fmt.Errorf("closing %s: %w", what, cerr))
	}
}

// oneLine keeps an error message on one line, whatever the error wraps.
func oneLine(err error) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(err.Error())
}

// quietLogger discards go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
