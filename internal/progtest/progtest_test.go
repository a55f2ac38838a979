package progtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Main itself exits the process: it is exercised by the packages that
	// use it (cmd/buscat, examples). Here, the build and Start.
	goleak.VerifyTestMain(m)
}

func TestPath(t *testing.T) {
	t.Chdir("testdata/hello")
	p := New("hello")
	path := p.Path(t)
	if again := p.Path(t); again != path {
		t.Fatalf("second Path = %q, first %q: built twice", again, path)
	}
	out, err := exec.Command(path).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from the built program" {
		t.Fatalf("running %s: %q, %v", path, out, err)
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Fatal(err)
	}
}

func TestPathBuildFailure(t *testing.T) {
	t.Chdir("testdata/broken")
	p := New("broken")
	for i := range 2 { // the failure sticks, without a second build
		ft := &fatalTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.Path(ft)
		}()
		<-done
		if !strings.Contains(ft.msg, "go build") || !strings.Contains(ft.msg, "undefinedFunction") {
			t.Fatalf("call %d: failure message %q lacks the build's output", i+1, ft.msg)
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Fatal(err)
	}
}

// fatalTB records Fatal and ends the goroutine, as the real one does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf calls fn with a fatalTB on a goroutine of its own and returns
// what it passed to Fatal or Fatalf, "" when fn returned.
func fatalOf(t *testing.T, fn func(tb testing.TB)) string {
	ft := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	return ft.msg
}

func TestStart(t *testing.T) {
	p := Start(t, exec.Command("sh", "-c", "echo one; echo two; echo oops >&2; exit 3"))
	for _, want := range []string{"one", "two"} {
		if got := p.Next(t, 10*time.Second); got != want {
			t.Fatalf("Next = %q, want %q", got, want)
		}
	}
	msg := fatalOf(t, func(tb testing.TB) { p.Next(tb, 10*time.Second) })
	if !strings.Contains(msg, "exited (exit status 3) before printing the line expected") || !strings.Contains(msg, `stderr "oops\n"`) {
		t.Errorf("Next after the end: failure %q lacks the exit status or stderr", msg)
	}
	var exit *exec.ExitError
	if err := p.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	if err := p.Wait(); !errors.As(err, &exit) {
		t.Errorf("second Wait = %v, want the same exit error", err)
	}
}

func TestStartNoLine(t *testing.T) {
	p := Start(t, exec.Command("sleep", "30")) // killed at cleanup
	msg := fatalOf(t, func(tb testing.TB) { p.Next(tb, 50*time.Millisecond) })
	if !strings.Contains(msg, "no line in 50ms") {
		t.Errorf("Next with no line: failure %q", msg)
	}
}

func TestInterrupt(t *testing.T) {
	// The shell loops until SIGINT, which its trap turns into a clean
	// exit.
	p := Start(t, exec.Command("sh", "-c", `trap 'echo bye; exit 0' INT; echo ready; while :; do sleep 0.01; done`))
	if got := p.Next(t, 10*time.Second); got != "ready" {
		t.Fatalf("Next = %q, want ready", got)
	}
	if err := p.Interrupt(); err != nil {
		t.Fatal(err)
	}
	if got := p.Next(t, 10*time.Second); got != "bye" {
		t.Errorf("after SIGINT: %q, want bye", got)
	}
	if err := p.Wait(); err != nil || p.Stderr() != "" {
		t.Errorf("after SIGINT: %v, stderr %q", err, p.Stderr())
	}
}

func TestRefusedAddr(t *testing.T) {
	addr := RefusedAddr(t)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection", addr)
	}
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		script string
		status int
		stderr string
	}{
		{"exit 0", 0, ""},
		{"echo bad flag >&2; exit 2", 2, "bad flag\n"},
		{"kill -9 $$", -1, ""},
	} {
		status, stderr, err := Run(exec.Command("sh", "-c", tc.script))
		if status != tc.status || stderr != tc.stderr || (err == nil) != (tc.status == 0) {
			t.Errorf("%q: status %d, stderr %q, err %v; want %d, %q", tc.script, status, stderr, err, tc.status, tc.stderr)
		}
	}
	if status, _, err := Run(exec.Command("/nonexistent/program")); status != -1 || err == nil {
		t.Errorf("a program that cannot start: status %d, err %v; want -1 and an error", status, err)
	}
}

// errorfTB records Errorf.
type errorfTB struct {
	testing.TB
	msgs []string
}

func (e *errorfTB) Helper() {}
func (e *errorfTB) Errorf(format string, args ...any) {
	e.msgs = append(e.msgs, fmt.Sprintf(format, args...))
}

// TestNoSecret checks that NoSecret fails a program that prints its URL
// or exits 0, and passes one that does neither.
func TestNoSecret(t *testing.T) {
	for _, tc := range []struct {
		script string
		fail   bool
	}{
		{`echo "bad URL $1" >&2; exit 2`, true},
		{`echo "bad URL $1"; exit 2`, true},
		{`echo "bad URL" >&2; exit 0`, true},
		{`echo "bad URL" >&2; exit 2`, false},
	} {
		rec := &errorfTB{TB: t}
		NoSecret(rec, "127.0.0.1:1", func(url string) *exec.Cmd { return exec.Command("sh", "-c", tc.script, "sh", url) })
		if failed := len(rec.msgs) > 0; failed != tc.fail {
			t.Errorf("%q: failed %v (%q), want %v", tc.script, failed, rec.msgs, tc.fail)
		}
	}
}
