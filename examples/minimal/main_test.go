package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
)

var program = progtest.New("minimal")

func TestMain(m *testing.M) { progtest.Main(m, program) }

// waitTimeout bounds every wait for a line of output.
const waitTimeout = 30 * time.Second

// TestREADME checks that the README's complete program is this file, as
// it is: a reader copying it gets what the tests run.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	block := "```go\n" + string(src) + "```\n"
	if !bytes.Contains(readme, []byte(block)) {
		t.Fatal("README.md does not hold examples/minimal/main.go verbatim in a ```go block: copy the file into it")
	}
}

// instance is one running process of the program.
type instance struct {
	*progtest.Proc
	ready chan string     // the "ready:" line of stderr
	errs  progtest.Buffer // the rest of stderr
}

func start(t *testing.T, url string) *instance {
	t.Helper()
	in := &instance{ready: make(chan string, 1)}
	cmd := exec.Command(program.Path(t))
	cmd.Env = append(os.Environ(), "REDIS_URL="+url)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	in.Proc = progtest.Start(t, cmd)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready:") {
				in.ready <- sc.Text()
			} else {
				in.errs.Write([]byte(sc.Text() + "\n"))
			}
		}
		close(in.ready)
	}()
	return in
}

func (in *instance) waitReady(t *testing.T) {
	t.Helper()
	select {
	case _, ok := <-in.ready:
		if !ok {
			t.Fatalf("the program ended before it was ready: %v\n%s", in.Wait(), in.errs.String())
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no ready line after %v", waitTimeout)
	}
}

// collect reads stdout until it holds want lines that match orderLine
// with from set to "this instance" (local) and want of other instances
// (remote, checked only when remote is true).
func (in *instance) collect(t *testing.T, remote bool) []string {
	t.Helper()
	var got []string
	local, others := 0, 0
	deadline := time.After(waitTimeout)
	for local < 3 || (remote && others < 3) {
		select {
		case l, ok := <-in.Lines():
			if !ok {
				t.Fatalf("the program ended: %v; output %q\nstderr:\n%s", in.Wait(), got, in.errs.String())
			}
			got = append(got, l)
			m := orderLine.FindStringSubmatch(l)
			switch {
			case m == nil:
				t.Errorf("unexpected line %q", l)
			case m[2] == "this instance":
				local++
			default:
				others++
			}
		case <-deadline:
			t.Fatalf("after %v: %d own and %d remote orders, want 3 and 3; output %q", waitTimeout, local, others, got)
		}
	}
	return got
}

// stop sends Ctrl-C and requires a clean exit.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	if err := in.Interrupt(); err != nil {
		t.Fatal(err)
	}
	for range in.Lines() { // drain to the end
	}
	if err := in.Wait(); err != nil {
		t.Errorf("exit after Ctrl-C: %v\nstderr:\n%s", err, in.errs.String())
	}
}

var orderLine = regexp.MustCompile(`^orders\.created: order (\d), total [0-9.]+, from (this instance|instance [0-9a-f]+)$`)

// TestTwoInstances runs the program twice against a real redis-server, as
// the README tells a reader to: each prints its own three orders, the
// instance started first prints all three of the other's, and both stop
// cleanly at Ctrl-C.
func TestTwoInstances(t *testing.T) {
	srv := redistest.Start(t, nil)
	first := start(t, srv.URL())
	first.waitReady(t)
	second := start(t, srv.URL())
	second.waitReady(t)

	first.collect(t, true)
	second.collect(t, false)
	first.stop(t)
	second.stop(t)
}

// TestNoRedis checks that a wrong address fails within Ready's timeout,
// with the reason.
func TestNoRedis(t *testing.T) {
	addr := progtest.RefusedAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, program.Path(t))
	cmd.Env = append(os.Environ(), "REDIS_URL=redis://"+addr)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the program succeeded without Redis:\n%s", out)
	}
	if !strings.Contains(string(out), "cannot connect") || !strings.Contains(string(out), "connection refused") {
		t.Errorf("output does not say why:\n%s", out)
	}
}

// TestNoSecret checks that no password of REDIS_URL is printed, whatever
// is wrong with it.
func TestNoSecret(t *testing.T) {
	srv := redistest.Start(t, nil)
	progtest.NoSecret(t, srv.Addr(), func(url string) *exec.Cmd {
		cmd := exec.Command(program.Path(t))
		cmd.Env = append(os.Environ(), "REDIS_URL="+url)
		return cmd
	})
}
