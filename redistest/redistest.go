package redistest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures a server started by [Start]. A nil *Options means all
// zero values: a plain-TCP server without persistence and with only the
// default user (no password, all permissions). Start copies the Options: the
// caller may change them afterwards.
type Options struct {
	// TLS makes the server accept TLS connections only (tls-port set, port
	// 0). A CA, a server certificate (for 127.0.0.1 and localhost) and a
	// client certificate are generated for the test (ECDSA P-256); see
	// [Server.TLSConfig] and [Server.CertFiles].
	TLS bool

	// RequireClientCert, with TLS, makes the server refuse clients that do
	// not present a certificate signed by the test CA (tls-auth-clients
	// yes). When false, a client certificate is optional
	// (tls-auth-clients optional). Ignored without TLS.
	RequireClientCert bool

	// ACL holds extra ACL rules, one user per entry, in aclfile syntax:
	// "user NAME on >password ~* &chan* +@all" (the leading "user " may be
	// omitted). They are written to an ACL file, so ACL SAVE and ACL LOAD
	// work. The default user keeps its defaults (on, nopass, all
	// permissions) unless an entry redefines "default".
	ACL []string

	// AppendOnly turns on the append-only file (appendonly yes) in the
	// server's temporary directory, so data survives [Server.Kill] and
	// [Server.Restart]. When false the server persists nothing (save "",
	// appendonly no).
	AppendOnly bool

	// Args are extra redis-server arguments appended to the command line
	// after the generated configuration file, such as
	// []string{"--maxmemory", "10mb"}. They override the generated
	// configuration.
	Args []string
}

// Server is a redis-server process owned by a test. Create it with [Start]
// (or get one from [Cluster.Node], [Sentinel.Nodes] or [Sentinel.Sentinels]:
// a sentinel is a redis-server in sentinel mode); the zero Server is not
// usable.
//
// Addr, URL, TLSConfig, CertFiles, ClientOptions, Client and CLI are safe
// for concurrent use, also while the server is killed or frozen (CLI then
// fails: at once when killed, after its 30-second limit when frozen). Kill may be called from any goroutine. Freeze and
// Restart report failures with t.Fatalf on the test given to Start, so,
// like t.Fatalf, they must be called from that test's goroutine, and
// Restart not concurrently with Kill.
type Server struct {
	t       testing.TB
	opts    Options
	dir     string
	conf    string
	logPath string
	outPath string
	port    int
	tls     *tlsFiles // nil without TLS

	// Set before the first start by the helpers of this package, for
	// cluster nodes, replicas and sentinels; changed afterwards only by
	// the test's goroutine while the process is killed
	// (Sentinel.RestartAsReplica).
	extraConf []string // extra redis.conf lines, written after the generated ones
	sentinel  bool     // a sentinel: no data directives in redis.conf
	ready     string   // log line that says the process is ready; "" means readyMsg

	mu   sync.Mutex    // protects cmd and done
	cmd  *exec.Cmd     // running process, nil after Kill
	done chan struct{} // closed when cmd has exited and been reaped
}

// startTimeout bounds how long one start attempt waits for the server to
// answer PING; restartTimeout bounds how long Restart keeps retrying a port
// that is still busy.
const (
	startTimeout   = 10 * time.Second
	restartTimeout = 10 * time.Second
	startAttempts  = 5
)

// errPortBusy reports that redis-server could not bind its port.
var errPortBusy = errors.New("redistest: port in use")

// install says how to get redis-server and redis-cli.
const install = "install Redis 7.0 or later (Debian, Ubuntu: apt-get install redis-server redis-tools; " +
	"macOS: brew install redis; in Busline's repository, bash scripts/test.sh does it)"

// lookPath returns the path of redis-server, failing t unless both
// redis-server and redis-cli are on PATH.
func lookPath(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server is not on PATH (%v): %s", err, install)
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redistest: redis-cli is not on PATH (%v): %s", err, install)
	}
	return bin
}

// Start starts a redis-server configured by opts (nil means defaults) on a
// free 127.0.0.1 port and blocks until it answers PING, which takes some
// tens of milliseconds; if another process takes the port first, Start
// tries another. It registers a t.Cleanup that kills the server and waits
// for it to exit, so the server lives until the end of the test (or
// subtest, or benchmark) t.
//
// Start calls t.Fatalf when redis-server or redis-cli is not on PATH (the
// message says what to install), when an ACL rule is invalid, or when the
// server does not come up within 10 seconds (the message then includes the
// tail of the server's log, where redis-server explains itself). So, like
// t.Fatalf, it must be called from the goroutine of the test t. Tests
// running in parallel may each start servers.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	lookPath(t)
	s := newServer(t)
	if opts != nil {
		s.opts = *opts
		s.opts.ACL = append([]string(nil), opts.ACL...)
		s.opts.Args = append([]string(nil), opts.Args...)
	}
	if s.opts.TLS {
		tf, err := writeTLSFiles(s.dir)
		if err != nil {
			t.Fatalf("redistest: generating TLS material: %v", err)
		}
		s.tls = tf
	}
	if len(s.opts.ACL) > 0 {
		if err := s.writeACLFile(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	launch(t, s, "redis-server", nil)
	return s
}

// newServer returns a server of t, not started, with its directory (a
// t.TempDir) and log paths set, and registers its Kill as a cleanup, which
// launch requires.
func newServer(t testing.TB) *Server {
	s := &Server{t: t, dir: t.TempDir()}
	s.logPath = filepath.Join(s.dir, "redis.log")
	s.outPath = filepath.Join(s.dir, "redis.out")
	t.Cleanup(s.Kill)
	return s
}

// poll calls try until it returns nil, every interval, and returns nil;
// when ctx ends first, it returns try's last error. try gets no context of
// its own: it uses the caller's ctx, which bounds each call too.
func poll(ctx context.Context, interval time.Duration, try func() error) error {
	for {
		err := try()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(interval):
		}
	}
}

// launch starts s on a free port and blocks until it is ready. For each
// port it tries, it sets s.port, calls prepare (when not nil: it may choose
// more ports or edit s.opts), writes redis.conf and starts the process; a
// port that another process took in between makes it try another. It calls
// t.Fatalf, naming what it was starting and with the tail of the log, when
// the process does not come up. The caller has registered s.Kill as a
// cleanup.
func launch(t testing.TB, s *Server, what string, prepare func() error) {
	t.Helper()
	bin := lookPath(t)
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		s.port = port
		if prepare != nil {
			if err := prepare(); err != nil {
				t.Fatalf("redistest: starting %s: %v", what, err)
			}
		}
		if err := s.writeConfig(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		lastErr = s.start(bin, startTimeout)
		if lastErr == nil {
			return
		}
		if !errors.Is(lastErr, errPortBusy) {
			break // not a port collision: retrying would fail the same way
		}
	}
	t.Fatalf("redistest: starting %s: %v\n%s", what, lastErr, s.logTail())
}

// Addr returns the server's address, "127.0.0.1:PORT". The port stays the
// same across [Server.Kill] and [Server.Restart], so clients configured with
// it reconnect by themselves once the server is back.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns "redis://127.0.0.1:PORT", or "rediss://127.0.0.1:PORT" for a
// TLS server (a client built from it still needs [Server.TLSConfig] to trust
// the test CA).
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// TLSConfig returns a new client TLS configuration that trusts the test CA
// and presents the test client certificate, or nil for a server without TLS.
// Each call returns a fresh *tls.Config the caller may modify.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.clientConfig()
}

// CertFiles returns the paths of the PEM files of the test CA certificate,
// the client certificate and the client private key, as redis-cli's --cacert,
// --cert and --key expect. They are empty strings without TLS.
func (s *Server) CertFiles() (ca, cert, key string) {
	if s.tls == nil {
		return "", "", ""
	}
	return s.tls.ca, s.tls.clientCert, s.tls.clientKey
}

// ClientOptions returns new go-redis options for the server: its address,
// Protocol 3 (RESP3, go-redis v9's default, stated so that tests do not
// depend on it) and, with TLS, [Server.TLSConfig]. Use it to build a client
// with extra settings (Username, Password, timeouts); the caller owns the
// result and must close any client made from it.
func (s *Server) ClientOptions() *redis.Options {
	return &redis.Options{
		Addr:      s.Addr(),
		Protocol:  3,
		TLSConfig: s.TLSConfig(),
	}
}

// Client returns a new go-redis v9 client for the server, built from
// [Server.ClientOptions], and registers a t.Cleanup that closes it; t may
// be a subtest of the one that started the server. Cleanups run last-in
// first-out, so the client is closed before the server is killed. It does
// not connect: the first command does. Closing the client earlier is
// allowed.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.ClientOptions())
	t.Cleanup(func() {
		// The only error Close can return is redis.ErrClosed, when the
		// test has closed the client already: nothing to report.
		_ = c.Close()
	})
	return c
}

// CLI runs redis-cli against the server (with the TLS flags for a TLS
// server) and returns its trimmed standard output. Arguments are passed as
// they are, e.g. CLI("SET", "k", "v") or CLI("--user", "u", "--pass", "p",
// "PING"). An error reply or a failed connection is returned as an error that
// includes redis-cli's output. CLI blocks until redis-cli exits, at most 30
// seconds; it may be called from any goroutine.
func (s *Server) CLI(args ...string) (string, error) {
	// -e makes redis-cli exit non-zero on an error reply; without it an
	// error reply is printed like a value and the exit status is 0.
	full := []string{"-e", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "--no-auth-warning"}
	if s.tls != nil {
		full = append(full, "--tls", "--cacert", s.tls.ca, "--cert", s.tls.clientCert, "--key", s.tls.clientKey)
	}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "redis-cli", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		return out, fmt.Errorf("redistest: redis-cli %s: %w: %s %s", strings.Join(args, " "), err, out, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Kill sends SIGKILL to the server's process group and blocks until the
// process has exited and been reaped. Clients then get connection errors;
// data not written to the append-only file is lost, as in a crash (with
// Options.AppendOnly, every acknowledged write is on disk). Kill on a server
// that is not running does nothing, so it is idempotent; [Start] registers it
// as a cleanup. It is safe to call from any goroutine, a frozen server
// included.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	// The negative pid addresses the process group created by Setpgid, so
	// anything redis-server forked (a background save) dies with it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// running reports whether the process was started and not killed since (it
// may be frozen, or have died by itself).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Freeze stops the server's process with SIGSTOP and returns at once: its
// connections stay open but nothing answers, as with a half-open
// connection or a stalled host, so clients see timeouts rather than errors.
// It returns the function that resumes the server with SIGCONT; that
// function is safe to call more than once, from any goroutine, and is also
// registered as a cleanup, so a test that fails while the server is frozen
// does not leave it stopped. Kill works on a frozen server. Freeze on a
// server that is not running calls t.Fatalf, from the goroutine of the test
// given to Start.
func (s *Server) Freeze() (thaw func()) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("redistest: Freeze on a server that is not running")
	}
	pid := cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		s.t.Fatalf("redistest: SIGSTOP: %v", err)
	}
	var once sync.Once
	thaw = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	s.t.Cleanup(thaw)
	return thaw
}

// Restart starts the server again after [Server.Kill], on the same port with
// the same configuration and data directory (so with its append-only file,
// if Options.AppendOnly, and for a cluster node its nodes.conf), and blocks
// until it answers PING. Restart on a running server kills it first. If the
// port is still busy, as when a test holds it to simulate an outage,
// Restart retries for 10 seconds. It calls t.Fatalf (on the test given to
// Start, so from that test's goroutine) when the server does not come back;
// the message includes the tail of its log.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	bin := lookPath(s.t)
	deadline := time.Now().Add(restartTimeout)
	for {
		err := s.start(bin, startTimeout)
		if err == nil {
			return
		}
		if !errors.Is(err, errPortBusy) || time.Now().After(deadline) {
			s.t.Fatalf("redistest: restarting redis-server on port %d: %v\n%s", s.port, err, s.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs one attempt: launch the process, wait until it logs that it is
// ready and answers PING. On failure the process is killed and reaped.
func (s *Server) start(bin string, timeout time.Duration) error {
	logStart := fileSize(s.logPath)
	out, err := os.OpenFile(s.outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := append([]string{s.conf}, s.opts.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = out // an *os.File: the child gets the descriptor itself
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	// The child has its own copy of the descriptor now: ours, through which
	// nothing was written, is no longer needed.
	closeErr := out.Close()
	if err != nil {
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	if closeErr != nil {
		// Not expected for a file nothing was written to; reap the child
		// rather than leave it running unseen.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return fmt.Errorf("closing %s: %w", s.outPath, closeErr)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // reap; the exit status is read from the log instead
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	err = s.waitReady(done, logStart, timeout)
	if err != nil {
		s.Kill()
	}
	return err
}

// waitReady polls until the server's own log says it is ready and it answers
// PING. Reading our log (not just dialing the port) matters: if another
// process grabbed the port between freePort and the bind, a PING would be
// answered by that process.
func (s *Server) waitReady(done <-chan struct{}, logStart int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ready := false
	var pingErr error
	for {
		select {
		case <-done:
			log := readFrom(s.logPath, logStart) + readFrom(s.outPath, 0)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("%w: %d", errPortBusy, s.port)
			}
			return errors.New("redis-server exited during startup")
		default:
		}
		if !ready {
			ready = strings.Contains(readFrom(s.logPath, logStart), s.readyLine())
		}
		if ready {
			if pingErr = s.ping(); pingErr == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if pingErr != nil {
				return fmt.Errorf("no answer to PING within %v: %w", timeout, pingErr)
			}
			return fmt.Errorf("not ready within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readyMsg is what redis-server logs once it accepts connections; a
// sentinel logs no such line, and is ready once it logs that it monitors its
// master.
const readyMsg = "Ready to accept connections"

func (s *Server) readyLine() string {
	if s.ready != "" {
		return s.ready
	}
	return readyMsg
}

// ping sends an inline PING and accepts any reply but -LOADING: +PONG, or
// -NOAUTH when the ACL rules disabled the default user (the server still
// answered).
func (s *Server) ping() (err error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.Dial("tcp", s.Addr())
	if err != nil {
		return err
	}
	if s.tls != nil {
		conn = tls.Client(conn, s.tls.clientConfig())
	}
	defer func() {
		// A failed close (a TLS close_notify that cannot be sent) means
		// the server is not answering well: worth another try.
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
	}()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSpace(line)
	if line == "+PONG" || strings.HasPrefix(line, "-NOAUTH") || strings.HasPrefix(line, "-NOPERM") {
		return nil
	}
	return fmt.Errorf("PING answered %q", line)
}

// writeConfig writes redis.conf for the current port.
func (s *Server) writeConfig() error {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("bind 127.0.0.1")
	line("protected-mode no") // loopback only, and tests connect without a password
	line("daemonize no")
	line("supervised no")
	line("dir %s", quote(s.dir))
	line("logfile %s", quote(s.logPath))
	line("loglevel notice")
	if !s.sentinel {
		line(`save ""`)
		if s.opts.AppendOnly {
			line("appendonly yes")
			line("appendfsync always") // a Kill loses nothing that was acknowledged
		} else {
			line("appendonly no")
		}
	}
	if s.tls != nil {
		line("port 0")
		line("tls-port %d", s.port)
		line("tls-cert-file %s", quote(s.tls.serverCert))
		line("tls-key-file %s", quote(s.tls.serverKey))
		line("tls-ca-cert-file %s", quote(s.tls.ca))
		if s.opts.RequireClientCert {
			line("tls-auth-clients yes")
		} else {
			line("tls-auth-clients optional")
		}
	} else {
		line("port %d", s.port)
	}
	if len(s.opts.ACL) > 0 {
		line("aclfile %s", quote(filepath.Join(s.dir, "users.acl")))
	}
	for _, l := range s.extraConf {
		line("%s", l)
	}
	s.conf = filepath.Join(s.dir, "redis.conf")
	if err := os.WriteFile(s.conf, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("writing redis.conf: %w", err)
	}
	return nil
}

// writeACLFile writes the ACL rules, one user per line.
func (s *Server) writeACLFile() error {
	var b strings.Builder
	for _, rule := range s.opts.ACL {
		rule = strings.TrimSpace(rule)
		if strings.ContainsAny(rule, "\r\n") {
			return fmt.Errorf("ACL rule %q spans several lines", rule)
		}
		if !strings.HasPrefix(rule, "user ") {
			rule = "user " + rule
		}
		b.WriteString(rule)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(s.dir, "users.acl"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("writing ACL file: %w", err)
	}
	return nil
}

// logTail returns the last lines of the server's log and of its standard
// output, for failure messages.
func (s *Server) logTail() string {
	return "--- redis.log (tail) ---\n" + tail(readFrom(s.logPath, 0), 30) +
		"\n--- redis-server stdout/stderr (tail) ---\n" + tail(readFrom(s.outPath, 0), 30)
}

// freePort asks the kernel for a free loopback port. The port is released
// before redis-server binds it, so another process may take it in between;
// Start detects that from the log and retries with another port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// quote makes a path safe for redis.conf, whose parser splits on spaces.
func quote(s string) string { return strconv.Quote(s) }

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the file's content from offset on, or "" if it cannot be
// read.
func readFrom(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || offset > int64(len(data)) {
		return ""
	}
	return string(data[offset:])
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
