// Package rconn dials a Redis connection of its own for a subscriber, with
// the settings of the user's go-redis client, and reads its replies with
// package resp: in place, without the strings and the *redis.Message that
// go-redis allocates for each message.
//
// It serves what a plain *redis.Client connects with (Addr, Network, Dialer,
// TLSConfig, Username and Password or a CredentialsProvider, DB,
// ClientName, Protocol, the timeouts). For the others, FromClient returns
// ErrUnsupported and the caller uses go-redis's PubSub.
package rconn

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/busline/bus/bridge/internal/resp"
	"github.com/redis/go-redis/v9"
)

// ErrUnsupported is returned by FromClient for clients whose connections
// rconn cannot make as go-redis would: Sentinel (failover) clients, Ring
// and Cluster clients, clients with an OnConnect hook or a streaming
// credentials provider.
var ErrUnsupported = errors.New("rconn: client not supported")

// Config is how to make a connection.
type Config struct {
	Network, Addr string
	// Dial makes the network connection (TLS included, if the client's
	// does).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Credentials returns the username and password to authenticate with
	// ("" for none), asked at each dial.
	Credentials func(ctx context.Context) (username, password string, err error)
	DB          int
	ClientName  string
	// Protocol is 2 (AUTH, SELECT, CLIENT SETNAME) or 3 (HELLO 3, then
	// SELECT), as go-redis's Options.Protocol.
	Protocol int
	// DialTimeout bounds the dial and the handshake.
	DialTimeout time.Duration
	// WriteTimeout bounds each write, if positive.
	WriteTimeout time.Duration
}

// FromClient returns the Config of c's connections, or ErrUnsupported.
func FromClient(c redis.UniversalClient) (*Config, error) {
	rc, ok := c.(*redis.Client)
	if !ok {
		return nil, fmt.Errorf("%w: a %T", ErrUnsupported, c)
	}
	o := rc.Options()
	switch {
	case o.Addr == "FailoverClient": // what go-redis names a Sentinel client's
		return nil, fmt.Errorf("%w: a Sentinel client", ErrUnsupported)
	case o.OnConnect != nil:
		return nil, fmt.Errorf("%w: an OnConnect hook", ErrUnsupported)
	case o.StreamingCredentialsProvider != nil:
		return nil, fmt.Errorf("%w: a streaming credentials provider", ErrUnsupported)
	case o.Dialer == nil: // never from Options(), which sets it (and TLS in it)
		return nil, fmt.Errorf("%w: options without a Dialer", ErrUnsupported)
	}
	cfg := &Config{Network: o.Network, Addr: o.Addr, Dial: o.Dialer, DB: o.DB, ClientName: o.ClientName,
		Protocol: o.Protocol, DialTimeout: o.DialTimeout, WriteTimeout: o.WriteTimeout}
	if cfg.Network == "" {
		cfg.Network = "tcp"
	}
	switch user, pass := o.Username, o.Password; {
	case o.CredentialsProviderContext != nil:
		cfg.Credentials = o.CredentialsProviderContext
	case o.CredentialsProvider != nil:
		p := o.CredentialsProvider
		cfg.Credentials = func(context.Context) (string, string, error) { u, p := p(); return u, p, nil }
	default:
		cfg.Credentials = func(context.Context) (string, string, error) { return user, pass, nil }
	}
	return cfg, nil
}

// A Conn is a connection that subscribes: one goroutine reads it
// (Receive), any may write to it (Send) and close it (Close).
type Conn struct {
	nc net.Conn
	br *bufio.Reader
	r  *resp.Reader
	// deadline is the read deadline set last; the reader's alone.
	deadline time.Time

	writeTimeout time.Duration
	wmu          sync.Mutex // protects wbuf and serialises writes
	wbuf         []byte
}

// Dial connects with cfg and makes the handshake. Bulk strings of its
// replies are at most maxBulk bytes (resp.MaxBulk if 0). Cancelling ctx
// ends the dial and the handshake.
func Dial(ctx context.Context, cfg *Config, maxBulk int) (*Conn, error) {
	if cfg.DialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.DialTimeout)
		defer cancel()
	}
	user, pass, err := cfg.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	nc, err := cfg.Dial(ctx, cfg.Network, cfg.Addr)
	if err != nil {
		return nil, err
	}
	c := newConn(nc, cfg.WriteTimeout, maxBulk)
	// The handshake ends with ctx: its deadline, or a cancel (Close).
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	err = c.handshake(cfg, user, pass)
	if !stop() || err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err == nil {
		err = nc.SetDeadline(time.Time{})
	}
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

func newConn(nc net.Conn, writeTimeout time.Duration, maxBulk int) *Conn {
	br := bufio.NewReaderSize(nc, 32<<10)
	return &Conn{nc: nc, br: br, r: resp.NewReader(br, maxBulk), writeTimeout: writeTimeout}
}

// handshake authenticates, names the connection and selects its database,
// as go-redis does: HELLO (with AUTH and SETNAME) unless Protocol is 2,
// then, if HELLO was refused, AUTH; then SELECT and CLIENT SETNAME, those
// HELLO did not do, in one round trip.
func (c *Conn) handshake(cfg *Config, user, pass string) error {
	named := false
	hello := cfg.Protocol != 2
	if hello {
		args := []string{"HELLO", "3"}
		if pass != "" {
			args = append(args, "AUTH", cmp.Or(user, "default"), pass)
		}
		if cfg.ClientName != "" {
			args = append(args, "SETNAME", cfg.ClientName)
		}
		err := c.roundTrip([][]string{args})
		var rerr resp.Error
		switch {
		case err == nil:
			named = true
		case !errors.As(err, &rerr):
			return err
		default:
			hello = false // HELLO refused: RESP2, as go-redis falls back
		}
	}
	if !hello && pass != "" {
		args := []string{"AUTH", pass}
		if user != "" {
			args = []string{"AUTH", user, pass}
		}
		if err := c.roundTrip([][]string{args}); err != nil {
			return fmt.Errorf("failed to authenticate: %w", err)
		}
	}
	var cmds [][]string
	if cfg.DB > 0 {
		cmds = append(cmds, []string{"SELECT", fmt.Sprint(cfg.DB)})
	}
	if cfg.ClientName != "" && !named {
		cmds = append(cmds, []string{"CLIENT", "SETNAME", cfg.ClientName})
	}
	return c.roundTrip(cmds)
}

// roundTrip sends cmds at once and reads their replies, returning the
// first error.
func (c *Conn) roundTrip(cmds [][]string) error {
	if len(cmds) == 0 {
		return nil
	}
	var b []byte
	for _, args := range cmds {
		b = resp.AppendCommand(b, args...)
	}
	if _, err := c.nc.Write(b); err != nil {
		return err
	}
	var first error
	for range cmds {
		err := c.r.Skip()
		var rerr resp.Error
		if err != nil && !errors.As(err, &rerr) {
			return err // the connection cannot be read further
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// Send writes the command args. It is safe for concurrent use with
// Receive and with other Sends; the replies come to Receive.
func (c *Conn) Send(args ...string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = resp.AppendCommand(c.wbuf[:0], args...)
	if c.writeTimeout > 0 {
		if err := c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
			return err
		}
	}
	_, err := c.nc.Write(c.wbuf)
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil
	}
	return err
}

// Receive reads the next reply into p (see resp.Reader.ReadPush); its
// slices are valid until the next Receive. If no reply starts by
// deadline, it returns a timeout (a net.Error), and the connection stays
// readable: a timeout never leaves half a reply read. A reply once
// started has until deadline and midReply more to arrive whole; if it does
// not, the error is not a timeout, and the connection cannot be read
// further.
func (c *Conn) Receive(p *resp.Push, deadline time.Time) error {
	if c.br.Buffered() == 0 {
		if err := c.setDeadline(deadline); err != nil {
			return err
		}
		if _, err := c.br.Peek(1); err != nil {
			return err
		}
	}
	// Set again only when deadline moves (the read loop's next PING, or
	// the answer due): not per message.
	if err := c.setDeadline(deadline.Add(midReply)); err != nil {
		return err
	}
	err := c.r.ReadPush(p)
	if err != nil && isTimeout(err) {
		return fmt.Errorf("rconn: a reply not whole %v after the read deadline: %v", midReply, err)
	}
	return err
}

// isTimeout reports whether err is a timeout. Its target lives here, where
// errors.As makes it escape, rather than in Receive, where it would cost an
// allocation per reply.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// midReply is how long after Receive's deadline a reply started may take
// to arrive whole: a server that stops in the middle of one (frozen, or
// the connection half-open) is found then. A variable for tests.
var midReply = 30 * time.Second

func (c *Conn) setDeadline(d time.Time) error {
	if d.Equal(c.deadline) {
		return nil
	}
	c.deadline = d
	return c.nc.SetReadDeadline(d)
}

// Close closes the connection, ending a Receive in progress. It is safe
// for concurrent use.
func (c *Conn) Close() error { return c.nc.Close() }
