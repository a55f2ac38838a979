package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// program is the program under test, built by the first test that runs
// it.
var program = progtest.New("notifications")

// built returns the path of the program, building it on first use.
func built(t *testing.T) string { return program.Path(t) }

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	progtest.Main(m, program)
}

// waitTimeout bounds every wait for output; the output normally comes in
// milliseconds.
const waitTimeout = 20 * time.Second

// TestInProcess checks the README's main command: no flags, no Redis.
func TestInProcess(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), nil, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	want := "publisher sends: New message from user123\n" +
		"listener received on notifications: New message from user123\n" +
		"publisher sends: Important update!\n" +
		"listener received on notifications: Important update!\n"
	if got := stdout.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %q", stderr.String())
	}
}

// TestInProcessBinary runs the built program, as `go run` does.
func TestInProcessBinary(t *testing.T) {
	out, err := exec.Command(built(t)).Output()
	if err != nil {
		t.Fatalf("%v", err)
	}
	if got := strings.Count(string(out), "listener received on notifications: "); got != 2 {
		t.Errorf("%d notifications received, want 2; output:\n%s", got, out)
	}
}

func TestFlagErrors(t *testing.T) {
	refused := refusedAddr(t)
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool   // errUsage, exit status 2; otherwise a runtime error
		want  string // in the error message
	}{
		{"role without redis", []string{"-role", "listener"}, true, "-role needs -redis"},
		{"bad role", []string{"-redis", "redis://127.0.0.1:1", "-role", "both"}, true, `not "both"`},
		{"no role", []string{"-redis", "redis://127.0.0.1:1"}, true, "-role must be"},
		{"bad url", []string{"-redis", "http://127.0.0.1", "-role", "listener"}, true, "bad -redis URL"},
		{"unknown flag", []string{"-verbose"}, true, "-verbose"},
		{"extra argument", []string{"now"}, true, `"now"`},
		{"unreachable", []string{"-redis", "redis://" + refused, "-role", "publisher"}, false, "cannot reach Redis at " + refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, errUsage) != tc.usage {
				t.Errorf("errors.Is(%v, errUsage) = %v, want %v", err, !tc.usage, tc.usage)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestExitStatus checks what main makes of run's errors: one line on
// stderr, status 2 for usage errors and 1 for runtime errors.
func TestExitStatus(t *testing.T) {
	refused := refusedAddr(t)
	for _, tc := range []struct {
		args   []string
		status int
	}{
		{[]string{"-role", "listener"}, 2},
		{[]string{"-redis", "redis://" + refused, "-role", "listener"}, 1},
	} {
		cmd := exec.Command(built(t), tc.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != tc.status {
			t.Errorf("%v: %v, want exit status %d", tc.args, err, tc.status)
		}
		if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.HasPrefix(stderr.String(), "notifications: ") {
			t.Errorf("%v: stderr %q, want one line starting with \"notifications: \"", tc.args, stderr.String())
		}
	}
}

// TestTwoProcessesAndRedisCLI runs a listener process and a publisher
// process against one redis-server, then publishes with redis-cli: the
// listener prints all three notifications, in order, and exits with status
// 0 on SIGINT.
func TestTwoProcessesAndRedisCLI(t *testing.T) {
	srv := redistest.Start(t, nil)
	for _, prefix := range []string{"", "test:"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			args := []string{"-redis", srv.URL(), "-role"}
			if prefix != "" {
				args = append([]string{"-prefix", prefix}, args...)
			} else {
				prefix = "app:" // the default
			}
			listener := exec.Command(built(t), append(args, "listener")...)
			var stderr bytes.Buffer
			listener.Stderr = &stderr
			lines := startLines(t, listener)
			if want := "listener ready on Redis channel " + prefix + "notifications (Ctrl-C to stop)"; lines.next(t) != want {
				t.Fatalf("first line is not %q", want)
			}

			out, err := exec.Command(built(t), append(args, "publisher")...).Output()
			if err != nil {
				t.Fatalf("publisher: %v", err)
			}
			wantPub := "publisher sends: New message from user123\n" +
				"publisher sends: Important update!\n" +
				"publisher sent 2 messages to Redis channel " + prefix + "notifications\n"
			if string(out) != wantPub {
				t.Errorf("publisher printed:\n%s\nwant:\n%s", out, wantPub)
			}
			for _, msg := range []string{"New message from user123", "Important update!"} {
				if got, want := lines.next(t), "listener received on notifications: "+msg; got != want {
					t.Fatalf("listener printed %q, want %q", got, want)
				}
			}

			// A plain Redis client on the raw channel. redis-cli prints the
			// number of subscribers that got it: the listener.
			n, err := srv.CLI("PUBLISH", prefix+"notifications", "hi")
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(n) != "1" {
				t.Errorf("redis-cli PUBLISH reached %q subscribers, want 1", n)
			}
			if got, want := lines.next(t), "listener received on notifications: hi"; got != want {
				t.Fatalf("listener printed %q, want %q", got, want)
			}

			if err := listener.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			if err := lines.wait(); err != nil {
				t.Fatalf("listener after SIGINT: %v (stderr %q)", err, stderr.String())
			}
			if stderr.Len() != 0 {
				t.Errorf("listener stderr: %q", stderr.String())
			}
		})
	}
}

// lineReader reads the stdout of a running command line by line.
type lineReader struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed when stdout is at EOF
}

// startLines starts cmd and reads its stdout. The process is killed at the
// end of the test if it is still running.
func startLines(t *testing.T, cmd *exec.Cmd) *lineReader {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &lineReader{cmd: cmd, lines: make(chan string, 100), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			r.wait()
		}
	})
	return r
}

// next returns the next line, failing the test if none comes in time.
func (r *lineReader) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-r.lines:
		return l
	case <-r.done:
		select {
		case l := <-r.lines:
			return l
		default:
		}
		t.Fatal("the program exited before printing the line expected")
	case <-time.After(waitTimeout):
		t.Fatal("no line in time")
	}
	return ""
}

// wait waits for the end of stdout and of the process.
func (r *lineReader) wait() error {
	<-r.done
	return r.cmd.Wait()
}

// refusedAddr returns a loopback address where nothing listens.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
