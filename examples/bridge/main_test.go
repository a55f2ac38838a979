package main

import (
	"bytes"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
)

// program is the program under test, built by the first test that runs
// it.
var program = progtest.New("bridge")

func TestMain(m *testing.M) { progtest.Main(m, program) }

// waitTimeout bounds every wait for output; it normally comes in
// milliseconds.
const waitTimeout = 20 * time.Second

// TestDemo runs the demo against a real redis-server, with the default
// prefix and with one: each message reaches both instances once.
func TestDemo(t *testing.T) {
	srv := redistest.Start(t, nil)
	for _, flags := range [][]string{nil, {"-prefix", "example:"}} {
		cmd := exec.Command(program.Path(t), append(flags, "-redis", srv.URL())...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() != 0 {
			t.Fatalf("demo %v: %v, stderr %q", flags, err, stderr.String())
		}
		got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		slices.Sort(got)
		want := []string{
			`instance-a got "hello from a" by a (local)`,
			`instance-a got "hello from b" by b (from instance-b)`,
			`instance-b got "hello from a" by a (from instance-a)`,
			`instance-b got "hello from b" by b (local)`,
		}
		if !slices.Equal(got, want) {
			t.Errorf("demo %v printed (sorted):\n%s\nwant:\n%s", flags, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// participant is a running chat participant.
type participant struct {
	*progtest.Proc
	stdin io.WriteCloser
}

// join starts a chat participant and waits for its banner.
func join(t *testing.T, url, name string) *participant {
	t.Helper()
	cmd := exec.Command(program.Path(t), "-redis", url, "-name", name)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &participant{Proc: progtest.Start(t, cmd), stdin: stdin}
	if got, want := p.next(t), "chatting as "+name+"; type lines, Ctrl-D or Ctrl-C to quit"; got != want {
		t.Fatalf("%s printed %q, want %q", name, got, want)
	}
	return p
}

// next returns the next line the participant prints.
func (p *participant) next(t *testing.T) string {
	t.Helper()
	return p.Next(t, waitTimeout)
}

// end waits for the participant to exit and checks that it exited with
// status 0, saying nothing more.
func (p *participant) end(t *testing.T) {
	t.Helper()
	if err := p.Wait(); err != nil || p.Stderr() != "" {
		t.Errorf("%v: %v, stderr %q", p.Cmd.Args, err, p.Stderr())
	}
	for l := range p.Lines() {
		t.Errorf("printed %q more", l)
	}
}

// TestChat runs two participants: what one types, the other prints, and
// each ends with status 0 on Ctrl-D (the end of stdin) or Ctrl-C.
func TestChat(t *testing.T) {
	srv := redistest.Start(t, nil)
	alice := join(t, srv.URL(), "alice")
	bob := join(t, srv.URL(), "bob")
	if _, err := io.WriteString(alice.stdin, "hello bob\n"); err != nil {
		t.Fatal(err)
	}
	if got := bob.next(t); got != "alice: hello bob" {
		t.Errorf("bob printed %q", got)
	}
	if _, err := io.WriteString(bob.stdin, "hi alice\n"); err != nil {
		t.Fatal(err)
	}
	if got := alice.next(t); got != "bob: hi alice" {
		t.Errorf("alice printed %q", got)
	}
	alice.stdin.Close() // Ctrl-D
	alice.end(t)
	if err := bob.Interrupt(); err != nil {
		t.Fatal(err)
	}
	bob.end(t)
}

// TestErrors checks the exit statuses: 2 for bad flags, 1 for an
// unreachable Redis, with one line on stderr.
func TestErrors(t *testing.T) {
	refused := progtest.RefusedAddr(t)
	for _, tc := range []struct {
		args   []string
		status int
		want   string // in stderr
	}{
		{[]string{"-redis", "http://x"}, 2, "-redis: bad Redis URL"},
		{[]string{"-redis", "rediss://127.0.0.1:1?skip_verify=true"}, 2, "skip_verify=true turns off"},
		{[]string{"now"}, 2, `unexpected argument "now"`},
		{[]string{"-redis", "redis://" + refused}, 1, "instance-a: cannot reach Redis at " + refused + ": dial tcp"},
		{[]string{"-redis", "redis://" + refused, "-name", "alice"}, 1, "alice: cannot reach Redis at " + refused},
	} {
		status, s, err := progtest.Run(exec.Command(program.Path(t), tc.args...))
		if status != tc.status {
			t.Errorf("%v: %v, want exit status %d", tc.args, err, tc.status)
		}
		if strings.Count(s, "\n") != 1 || !strings.HasPrefix(s, "bridge: ") || !strings.Contains(s, tc.want) {
			t.Errorf("%v: stderr %q, want one line saying %q", tc.args, s, tc.want)
		}
	}
}

// TestNoSecret checks that no password of -redis is printed, whatever is
// wrong with it, in the demo and in the chat.
func TestNoSecret(t *testing.T) {
	srv := redistest.Start(t, nil)
	progtest.NoSecret(t, srv.Addr(), func(url string) *exec.Cmd { return exec.Command(program.Path(t), "-redis", url) })
	progtest.NoSecret(t, srv.Addr(), func(url string) *exec.Cmd {
		return exec.Command(program.Path(t), "-redis", url, "-name", "alice")
	})
}
