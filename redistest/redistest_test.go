package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStartPing(t *testing.T) {
	s := Start(t, nil)
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 {
		t.Fatalf("Addr() port %q", port)
	}
	if got, want := s.URL(), "redis://"+s.Addr(); got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	if s.TLSConfig() != nil {
		t.Error("TLSConfig() != nil without TLS")
	}
	if ca, cert, key := s.CertFiles(); ca != "" || cert != "" || key != "" {
		t.Error("CertFiles() not empty without TLS")
	}
	c := s.Client(t)
	ctx := ctxT(t)
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	// No persistence by default.
	cfg, err := c.ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"save": "", "appendonly": "no", "bind": "127.0.0.1"} {
		if cfg[k] != want {
			t.Errorf("CONFIG GET %s = %q, want %q", k, cfg[k], want)
		}
	}
	if cfg["dir"] != s.dir {
		t.Errorf("dir = %q, want the test's temp dir %q", cfg["dir"], s.dir)
	}
	// RESP3 by default.
	hello, err := c.Do(ctx, "HELLO").Result()
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := hello.(map[any]any); !ok || m["proto"] != int64(3) {
		t.Errorf("HELLO = %#v, want proto 3", hello)
	}
}

func TestTwoServersDistinctPorts(t *testing.T) {
	a, b := Start(t, nil), Start(t, nil)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers on %s", a.Addr())
	}
	ctx := ctxT(t)
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Client(t).Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k on the second server: %v, want redis.Nil", err)
	}
}

func TestKillRestart(t *testing.T) {
	s := Start(t, nil)
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pid := s.pid()
	s.Kill()
	checkReaped(t, "Kill", pid)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	if _, err := s.CLI("PING"); err == nil {
		t.Fatal("redis-cli PING succeeded after Kill")
	}
	s.Kill() // idempotent

	addr := s.Addr()
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved from %s to %s", addr, s.Addr())
	}
	// The same client reconnects on its own.
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING after Restart = %q, %v", got, err)
	}
	// No persistence: the key is gone.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after restart without persistence: %v, want redis.Nil", err)
	}
}

// TestFreeze checks that a frozen server keeps its connections but does
// not answer, and answers again once thawed.
func TestFreeze(t *testing.T) {
	s := Start(t, nil)
	c := s.Client(t)
	if err := c.Ping(ctxT(t)).Err(); err != nil {
		t.Fatal(err)
	}
	// go-redis ignores a context's deadline while it reads unless told
	// otherwise: a short read timeout instead.
	o := s.ClientOptions()
	o.ReadTimeout, o.MaxRetries = 200*time.Millisecond, -1
	short := redis.NewClient(o)
	defer short.Close()
	thaw := s.Freeze()
	if err := short.Ping(ctxT(t)).Err(); err == nil {
		t.Fatal("a frozen server answered PING")
	}
	thaw()
	thaw() // idempotent
	// A new client: the first one's connection still has the cancelled
	// PING's answer on its way.
	if err := s.Client(t).Ping(ctxT(t)).Err(); err != nil {
		t.Fatalf("PING after thaw: %v", err)
	}
}

// TestRestartWaitsForBusyPort holds the server's port with another listener
// across Restart and releases it later: Restart must retry, not fail.
func TestRestartWaitsForBusyPort(t *testing.T) {
	s := Start(t, nil)
	s.Kill()
	l, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatalf("could not hold the port: %v", err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(700 * time.Millisecond)
		l.Close()
	}()
	s.Restart()
	<-released
	if out, err := s.CLI("PING"); err != nil || out != "PONG" {
		t.Fatalf("CLI PING after a restart on a busy port = %q, %v", out, err)
	}
	if !strings.Contains(readFrom(s.logPath, 0), "Address already in use") {
		t.Error("the server never found the port busy: the test did not exercise the retry")
	}
}

func TestAppendOnlySurvivesKill(t *testing.T) {
	s := Start(t, &Options{AppendOnly: true})
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	s.Restart()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k after Kill+Restart with AOF = %q, %v, want v", got, err)
	}
}

func TestRestartWhileRunning(t *testing.T) {
	s := Start(t, nil)
	old := s.pid()
	s.Restart()
	if s.pid() == old {
		t.Fatal("Restart on a running server kept the old process")
	}
	if out, err := s.CLI("PING"); err != nil || out != "PONG" {
		t.Fatalf("CLI PING = %q, %v", out, err)
	}
}

func TestTLS(t *testing.T) {
	for _, require := range []bool{false, true} {
		t.Run("RequireClientCert="+strconv.FormatBool(require), func(t *testing.T) {
			s := Start(t, &Options{TLS: true, RequireClientCert: require})
			if got, want := s.URL(), "rediss://"+s.Addr(); got != want {
				t.Errorf("URL() = %q, want %q", got, want)
			}
			ctx := ctxT(t)
			if got, err := s.Client(t).Ping(ctx).Result(); err != nil || got != "PONG" {
				t.Fatalf("TLS client PING = %q, %v", got, err)
			}

			plain := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
			defer plain.Close()
			if err := plain.Ping(ctx).Err(); err == nil {
				t.Fatal("plain-TCP client PING on a TLS server succeeded")
			}

			// A client that trusts the CA but presents no certificate.
			noCert := s.ClientOptions()
			noCert.TLSConfig.Certificates = nil
			noCert.MaxRetries = -1
			nc := redis.NewClient(noCert)
			defer nc.Close()
			err := nc.Ping(ctx).Err()
			if require && err == nil {
				t.Fatal("client without certificate accepted with RequireClientCert")
			}
			if !require && err != nil {
				t.Fatalf("client without certificate refused with optional client certs: %v", err)
			}

			// A client that does not trust the test CA.
			untrusted := s.ClientOptions()
			untrusted.TLSConfig.RootCAs = nil
			untrusted.MaxRetries = -1
			uc := redis.NewClient(untrusted)
			defer uc.Close()
			if err := uc.Ping(ctx).Err(); err == nil {
				t.Fatal("client without the test CA verified the server certificate")
			}

			ca, cert, key := s.CertFiles()
			for _, p := range []string{ca, cert, key} {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("CertFiles: %v", err)
				}
			}
			if out, err := s.CLI("PING"); err != nil || out != "PONG" {
				t.Fatalf("CLI PING over TLS = %q, %v", out, err)
			}
		})
	}
}

func TestTLSRestart(t *testing.T) {
	s := Start(t, &Options{TLS: true})
	c := s.Client(t)
	ctx := ctxT(t)
	s.Kill()
	s.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after TLS restart: %v", err)
	}
}

func TestACL(t *testing.T) {
	s := Start(t, &Options{ACL: []string{
		"user app on >secret resetchannels &app:* +@all -@dangerous ~*",
		"reader on >pw resetchannels ~* +get", // the "user " prefix may be omitted
	}})
	ctx := ctxT(t)
	o := s.ClientOptions()
	o.Username, o.Password = "app", "secret"
	app := redis.NewClient(o)
	defer app.Close()

	if err := app.Publish(ctx, "app:x", "hi").Err(); err != nil {
		t.Fatalf("PUBLISH app:x as app: %v", err)
	}
	err := app.Publish(ctx, "other:x", "hi").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("PUBLISH other:x as app: %v, want NOPERM", err)
	}

	// The default user keeps full access.
	if err := s.Client(t).Publish(ctx, "other:x", "hi").Err(); err != nil {
		t.Fatalf("PUBLISH other:x as default: %v", err)
	}

	// Wrong password.
	o = s.ClientOptions()
	o.Username, o.Password, o.MaxRetries = "app", "wrong", -1
	bad := redis.NewClient(o)
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil {
		t.Fatal("PING with a wrong password succeeded")
	}

	// Through redis-cli.
	if _, err := s.CLI("--user", "reader", "--pass", "pw", "SET", "k", "v"); err == nil {
		t.Fatal("SET as reader succeeded")
	} else if !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("SET as reader: %v, want NOPERM", err)
	}
	if out, err := s.CLI("ACL", "WHOAMI"); err != nil || out != "default" {
		t.Fatalf("CLI ACL WHOAMI = %q, %v", out, err)
	}
	users, err := s.CLI("ACL", "USERS")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(users); strings.Join(got, ",") != "app,default,reader" {
		t.Fatalf("ACL USERS = %q", got)
	}
}

func TestACLRejectsMultiline(t *testing.T) {
	s := &Server{dir: t.TempDir(), opts: Options{ACL: []string{"user a on\nuser b on"}}}
	if err := s.writeACLFile(); err == nil {
		t.Fatal("multi-line ACL rule accepted")
	}
}

func TestCLI(t *testing.T) {
	s := Start(t, nil)
	if out, err := s.CLI("SET", "greeting", "hello world"); err != nil || out != "OK" {
		t.Fatalf("CLI SET = %q, %v", out, err)
	}
	if out, err := s.CLI("GET", "greeting"); err != nil || out != "hello world" {
		t.Fatalf("CLI GET = %q, %v", out, err)
	}
	if got, err := s.Client(t).Get(ctxT(t), "greeting").Result(); err != nil || got != "hello world" {
		t.Fatalf("go-redis GET = %q, %v", got, err)
	}
	if _, err := s.CLI("NOSUCHCOMMAND"); err == nil {
		t.Fatal("CLI with an unknown command returned no error")
	}
	if _, err := s.CLI("LPUSH", "greeting", "x"); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("CLI LPUSH on a string: %v, want WRONGTYPE", err)
	}
}

func TestArgs(t *testing.T) {
	s := Start(t, &Options{Args: []string{"--maxmemory", "7mb", "--databases", "3"}})
	if out, err := s.CLI("CONFIG", "GET", "databases"); err != nil || !strings.HasSuffix(out, "3") {
		t.Fatalf("CONFIG GET databases = %q, %v", out, err)
	}
	if out, err := s.CLI("CONFIG", "GET", "maxmemory"); err != nil || !strings.HasSuffix(out, strconv.Itoa(7<<20)) {
		t.Fatalf("CONFIG GET maxmemory = %q, %v", out, err)
	}
}

// TestStartFailureReportsLog checks that a server that cannot start fails the
// test with the log tail, using a fake TB that records Fatalf.
func TestStartFailureReportsLog(t *testing.T) {
	ft := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, &Options{Args: []string{"--no-such-option", "1"}})
	}()
	<-done
	ft.runCleanups()
	if !strings.Contains(ft.msg, "no-such-option") {
		t.Fatalf("failure message does not include the server's complaint:\n%s", ft.msg)
	}
	if !strings.Contains(ft.msg, "redis-server") {
		t.Fatalf("failure message: %s", ft.msg)
	}
}

// fatalTB records Fatalf and stops the goroutine instead of failing the
// enclosing test, and keeps cleanups to run them by hand.
type fatalTB struct {
	testing.TB
	msg      string
	cleanups []func()
}

func (f *fatalTB) Helper()           {}
func (f *fatalTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// pid returns the running server's process id, or 0.
func (s *Server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// checkReaped checks that the processes pids are gone, reaped (no
// zombie), after what the message names.
func checkReaped(t *testing.T, after string, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("after %s, signal 0 to pid %d: %v, want ESRCH", after, pid, err)
		}
	}
}

// TestServerDiesWithItsTest checks the promise of the package: a server
// started in a (sub)test is killed and reaped when that test ends.
func TestServerDiesWithItsTest(t *testing.T) {
	var pid int
	var addr string
	t.Run("sub", func(t *testing.T) {
		s := Start(t, nil)
		pid, addr = s.pid(), s.Addr()
	})
	checkReaped(t, "its test ended", pid)
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("something still listens on %s after the test ended", addr)
	}
}

// TestMissingBinaries checks what a user without Redis installed reads.
func TestMissingBinaries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   func(tb testing.TB)
		missing string // the binary left out of PATH
	}{
		{"Start without redis-server", func(tb testing.TB) { Start(tb, nil) }, "redis-server"},
		{"Start without redis-cli", func(tb testing.TB) { Start(tb, nil) }, "redis-cli"},
		{"StartCluster without redis-server", func(tb testing.TB) { StartCluster(tb, 3) }, "redis-server"},
		{"StartClusterWith without redis-cli", func(tb testing.TB) { StartClusterWith(tb, &ClusterOptions{ReplicasPerMaster: 1}) }, "redis-cli"},
		{"StartSentinel without redis-server", func(tb testing.TB) { StartSentinel(tb, nil) }, "redis-server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A PATH holding only the other binary.
			dir := t.TempDir()
			for _, name := range []string{"redis-server", "redis-cli"} {
				if name == tc.missing {
					continue
				}
				path, err := exec.LookPath(name)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(path, filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("PATH", dir)
			ft := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.start(ft)
			}()
			<-done
			ft.runCleanups()
			for _, want := range []string{"redistest: " + tc.missing + " is not on PATH", "apt-get install redis-server redis-tools", "brew install redis"} {
				if !strings.Contains(ft.msg, want) {
					t.Errorf("message %q lacks %q", ft.msg, want)
				}
			}
		})
	}
}
