// Package redistest starts a real redis-server for tests.
//
// Each [Start] runs its own redis-server process (found on PATH; the project
// targets Redis 7.0) on a free 127.0.0.1 port, with its data directory, log
// file, ACL file and TLS material in a t.TempDir(). The process is never
// daemonized: the test owns it, kills it with SIGKILL at cleanup and reaps it,
// so no server outlives its test. Nothing here is an imitation of Redis; tests
// see exactly what production sees, including TLS, ACL and persistence.
//
// A missing redis-server is a test failure, not a skip: run
// `bash scripts/test.sh`, which installs it.
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
// default user (no password, all permissions).
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

// Server is a redis-server process owned by a test. Create it with [Start].
//
// Addr, URL, TLSConfig, CertFiles, ClientOptions and CLI are safe for
// concurrent use. Kill and Restart may be called from any goroutine but not
// concurrently with each other; Restart and Start report failures with
// t.Fatal, so call Restart from the test's goroutine.
type Server struct {
	t       testing.TB
	opts    Options
	dir     string
	conf    string
	logPath string
	outPath string
	port    int
	tls     *tlsFiles // nil without TLS

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

// Start starts a redis-server configured by opts (nil means defaults) on a
// free 127.0.0.1 port and waits until it answers PING. It registers a
// t.Cleanup that kills the server and waits for it to exit. Start calls
// t.Fatal when redis-server is not on PATH or does not come up; the message
// then includes the tail of the server's log. Start must be called from the
// test's goroutine.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (%v): run `bash scripts/test.sh`, which installs it (Debian package redis-server, Redis 7.0)", err)
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redistest: redis-cli not found on PATH (%v): run `bash scripts/test.sh`, which installs it", err)
	}
	s := &Server{t: t, dir: t.TempDir()}
	if opts != nil {
		s.opts = *opts
		s.opts.ACL = append([]string(nil), opts.ACL...)
		s.opts.Args = append([]string(nil), opts.Args...)
	}
	s.logPath = filepath.Join(s.dir, "redis.log")
	s.outPath = filepath.Join(s.dir, "redis.out")
	if s.opts.TLS {
		s.tls, err = writeTLSFiles(s.dir)
		if err != nil {
			t.Fatalf("redistest: generating TLS material: %v", err)
		}
	}
	if len(s.opts.ACL) > 0 {
		if err := s.writeACLFile(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	t.Cleanup(s.Kill)

	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		s.port = port
		if err := s.writeConfig(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		lastErr = s.start(bin, startTimeout)
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortBusy) {
			break // not a port collision: retrying would fail the same way
		}
	}
	t.Fatalf("redistest: starting redis-server: %v\n%s", lastErr, s.logTail())
	return nil
}

// Addr returns the server's address, "127.0.0.1:PORT". The port stays the
// same across [Server.Restart].
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

// ClientOptions returns go-redis options for the server: its address,
// Protocol 3 and, with TLS, [Server.TLSConfig]. Use it to build a client with
// extra settings (Username, Password, timeouts); the caller owns the result
// and must close any client made from it.
func (s *Server) ClientOptions() *redis.Options {
	return &redis.Options{
		Addr:      s.Addr(),
		Protocol:  3,
		TLSConfig: s.TLSConfig(),
	}
}

// Client returns a go-redis v9 client for the server, built from
// [Server.ClientOptions], and registers a t.Cleanup that closes it (before
// the server is killed, since cleanups run last-in first-out).
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.ClientOptions())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// CLI runs redis-cli against the server (with the TLS flags for a TLS
// server) and returns its trimmed standard output. Arguments are passed as
// they are, e.g. CLI("SET", "k", "v") or CLI("--user", "u", "--pass", "p",
// "PING"). An error reply or a failed connection is returned as an error that
// includes redis-cli's output.
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

// Kill sends SIGKILL to the server's process group and waits until the
// process has exited and been reaped. Data not written to the append-only
// file is lost, as in a crash. Kill on a server that is not running does
// nothing. It is registered as a cleanup by [Start].
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

// Freeze stops the server's process with SIGSTOP: its connections stay
// open but nothing answers, as with a half-open connection or a stalled
// host. It returns the function that resumes it with SIGCONT; that function
// is safe to call more than once and is also registered as a cleanup, so a
// test that fails while the server is frozen does not leave it stopped.
// Freeze on a server that is not running calls t.Fatal.
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
// the same configuration and data directory, and waits until it answers PING.
// If the port is still busy it retries for a few seconds, then calls t.Fatal.
// Restart on a running server kills it first.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.t.Fatalf("redistest: redis-server not found on PATH (%v): run `bash scripts/test.sh`", err)
	}
	deadline := time.Now().Add(restartTimeout)
	for {
		err = s.start(bin, startTimeout)
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
	defer out.Close() // the child has its own copy of the descriptor

	args := append([]string{s.conf}, s.opts.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", bin, err)
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
			ready = strings.Contains(readFrom(s.logPath, logStart), "Ready to accept connections")
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

// ping sends an inline PING and accepts any reply but -LOADING: +PONG, or
// -NOAUTH when the ACL rules disabled the default user (the server still
// answered).
func (s *Server) ping() error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.Dial("tcp", s.Addr())
	if err != nil {
		return err
	}
	if s.tls != nil {
		tc := tls.Client(conn, s.tls.clientConfig())
		conn = tc
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
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
	line(`save ""`)
	if s.opts.AppendOnly {
		line("appendonly yes")
		line("appendfsync always") // a Kill loses nothing that was acknowledged
	} else {
		line("appendonly no")
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
