package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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

// failingWriter fails the writes of lines that start with prefix, and
// passes the others to w.
type failingWriter struct {
	prefix string
	w      io.Writer
}

var errWrite = errors.New("disk full")

func (f failingWriter) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), f.prefix) {
		return 0, errWrite
	}
	return f.w.Write(p)
}

// TestOutputError checks that a line the program cannot print is its
// error, not lost: the publisher's and the listener's, in one process and
// in the Redis mode, where the listener then stops.
func TestOutputError(t *testing.T) {
	for _, prefix := range []string{"publisher", "listener"} {
		err := run(context.Background(), nil, failingWriter{prefix, io.Discard}, io.Discard)
		if !errors.Is(err, errWrite) || !strings.Contains(err.Error(), "writing to stdout") {
			t.Errorf("run failing on %s lines: %v, want an error wrapping %v", prefix, err, errWrite)
		}
	}

	srv := redistest.Start(t, nil)
	ready := make(chan string, 1)
	out := failingWriter{"listener received", writerFunc(func(p []byte) (int, error) {
		ready <- string(p)
		return len(p), nil
	})}
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"-redis", srv.URL(), "-role", "listener"}, out, io.Discard)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("listener: %v", err)
	}
	if _, err := srv.CLI("PUBLISH", "notifications", "hi"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, errWrite) || !strings.Contains(err.Error(), "writing to stdout") {
			t.Errorf("listener failing to print: %v, want an error wrapping %v", err, errWrite)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the listener did not stop when it could not print")
	}
}

// writerFunc is a function as an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestFlagErrors(t *testing.T) {
	refused := progtest.RefusedAddr(t)
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool   // errUsage, exit status 2; otherwise a runtime error
		want  string // in the error message
	}{
		{"role without redis", []string{"-role", "listener"}, true, "-role needs -redis"},
		{"prefix without redis", []string{"-prefix", "app:"}, true, "-prefix needs -redis"},
		{"envelope without redis", []string{"-envelope"}, true, "-envelope needs -redis"},
		{"bad role", []string{"-redis", "redis://127.0.0.1:1", "-role", "both"}, true, `not "both"`},
		{"no role", []string{"-redis", "redis://127.0.0.1:1"}, true, "-role must be"},
		{"bad url", []string{"-redis", "http://127.0.0.1", "-role", "listener"}, true, "-redis: bad Redis URL"},
		{"skip_verify", []string{"-redis", "rediss://127.0.0.1:1?skip_verify=true", "-role", "listener"}, true, "skip_verify=true turns off"},
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
	refused := progtest.RefusedAddr(t)
	for _, tc := range []struct {
		args   []string
		status int
	}{
		{[]string{"-role", "listener"}, 2},
		{[]string{"-redis", "redis://" + refused, "-role", "listener"}, 1},
	} {
		status, stderr, err := progtest.Run(exec.Command(built(t), tc.args...))
		if status != tc.status {
			t.Errorf("%v: %v, want exit status %d", tc.args, err, tc.status)
		}
		if lines := strings.Count(stderr, "\n"); lines != 1 || !strings.HasPrefix(stderr, "notifications: ") {
			t.Errorf("%v: stderr %q, want one line starting with \"notifications: \"", tc.args, stderr)
		}
	}
}

// readmeStep is a command of the README's notifications block and the
// output lines printed after it.
type readmeStep struct {
	line       string   // the command as printed, without "$ " and " &"
	background bool     // printed with a trailing " &"
	want       []string // the lines printed after it, before the next command
}

// readmeSteps returns the commands of the README block between the lines
// <!-- notifications:begin ...--> and <!-- notifications:end -->: the
// lines starting "$ " in its console code blocks, each with the lines
// printed after it.
func readmeSteps(t *testing.T) []readmeStep {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- notifications:begin")
	block, _, ok2 := strings.Cut(rest, "<!-- notifications:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- notifications:begin --> ... <!-- notifications:end --> block")
	}
	var steps []readmeStep
	console := false
	for _, l := range strings.Split(block, "\n") {
		switch {
		case strings.HasPrefix(l, "```"):
			console = !console && l == "```console"
		case !console || l == "":
		case strings.HasPrefix(l, "$ "):
			cmd, bg := strings.CutSuffix(strings.TrimPrefix(l, "$ "), " &")
			steps = append(steps, readmeStep{line: cmd, background: bg})
		case len(steps) == 0:
			t.Fatalf("README block: output %q before any command", l)
		default:
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, l)
		}
	}
	if len(steps) == 0 {
		t.Fatal("README block: no command")
	}
	return steps
}

// TestREADME runs the commands of the README's notifications block as
// printed, with a shell, against a real redis-server, and checks that they
// print the lines the block shows, each process its own lines in the order
// shown, before the next command runs. The only changes to the commands:
// the built program for `go run ./examples/notifications`, the server's
// address for 127.0.0.1:6379, and for redis-cli, whose default server is
// 127.0.0.1:6379, the server's -h and -p. redis-cli prints to a
// pseudo-terminal, as at a prompt, so that it formats its output as the
// README shows it; python3 is one that has redis-py.
func TestREADME(t *testing.T) {
	steps := readmeSteps(t)
	py := needPython(t)
	pty, tty, err := openPTY()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-cli needs a terminal, and CI requires this test: %v", err)
		}
		t.Skipf("redis-cli needs a terminal: %v", err)
	}
	pty.Close()
	tty.Close()
	srv := redistest.Start(t, nil)

	// python3 on PATH is one with redis-py, as for a user who installed it.
	bin := t.TempDir()
	if err := os.Symlink(py, filepath.Join(bin, "python3")); err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, lines: make(chan procLine, 10000), env: append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))}
	for _, st := range steps {
		p := s.start(st.line, s.shellLine(st.line, srv))
		if !st.background {
			p.finish(t)
		}
		s.expect(st.line, st.want)
	}
	s.stop()
}

// shellLine returns the shell command that runs a README command against
// srv with the program under test; see TestREADME.
func (s *session) shellLine(line string, srv *redistest.Server) string {
	s.t.Helper()
	const goRun = "go run ./examples/notifications"
	switch {
	case strings.HasPrefix(line, goRun+" "), strings.HasPrefix(line, "python3 "):
	case strings.HasPrefix(line, "redis-cli "):
		_, port, _ := strings.Cut(srv.Addr(), ":")
		line = "redis-cli -h 127.0.0.1 -p " + port + strings.TrimPrefix(line, "redis-cli")
	default:
		s.t.Fatalf("README block: the test does not know how to run %q", line)
	}
	line = strings.ReplaceAll(line, goRun, "'"+built(s.t)+"'")
	return strings.ReplaceAll(line, "127.0.0.1:6379", srv.Addr())
}

// session runs the commands of a README block, each as a process of its
// own, and matches what they print with what the README shows.
type session struct {
	t     *testing.T
	env   []string
	procs []*sessionProc
	lines chan procLine // what every process prints
}

// procLine is a line printed by p.
type procLine struct {
	p    *sessionProc
	text string
}

// sessionProc is a process of a session.
type sessionProc struct {
	line   string // the README command
	cmd    *exec.Cmd
	stderr progtest.Buffer
	unread []string      // lines printed and not matched yet
	done   chan struct{} // closed when stdout is at EOF
}

// start runs shell with sh: readme is the command as printed.
func (s *session) start(readme, shell string) *sessionProc {
	t := s.t
	t.Helper()
	p := &sessionProc{line: readme, done: make(chan struct{})}
	// exec: the signals of stop go to the program, not to a shell.
	p.cmd = exec.Command("sh", "-c", "exec "+shell)
	p.cmd.Env = s.env
	p.cmd.Stderr = &p.stderr
	var out io.ReadCloser
	if strings.HasPrefix(readme, "redis-cli ") {
		pty, tty, err := openPTY()
		if err != nil {
			t.Fatal(err)
		}
		p.cmd.Stdout = tty
		defer tty.Close() // the child has its own copy once started
		out = pty
	} else {
		var err error
		if out, err = p.cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("%s: %v", readme, err)
	}
	s.procs = append(s.procs, p)
	go func() {
		defer close(p.done)
		defer out.Close()
		// A terminal ends lines with "\r\n". Reading the terminal's end
		// fails with EIO once the program has exited: the end of it.
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- procLine{p, strings.TrimSuffix(sc.Text(), "\r")}
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
			p.cmd.Wait()
		}
	})
	return p
}

// finish waits until p exits and fails the test unless it succeeded and
// said nothing on stderr.
func (p *sessionProc) finish(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		t.Fatalf("%s: still running after %v", p.line, waitTimeout)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("%s: %v (stderr %q)", p.line, err, p.stderr.String())
	}
	if p.stderr.String() != "" {
		t.Errorf("%s: stderr %q", p.line, p.stderr.String())
	}
}

// expect waits until the processes have printed want, each line by one
// process, the lines of each process in their order in want.
func (s *session) expect(after string, want []string) {
	s.t.Helper()
	timeout := time.After(waitTimeout)
	for _, w := range want {
	wait:
		for {
			for _, p := range s.procs {
				if len(p.unread) > 0 && p.unread[0] == w {
					p.unread = p.unread[1:]
					break wait
				}
			}
			select {
			case l := <-s.lines:
				l.p.unread = append(l.p.unread, l.text)
			case <-timeout:
				s.t.Fatalf("after %s: no process printed %q; printed and not in the README:%s%s", after, w, s.unmatched(), s.stderrs())
			}
		}
	}
}

// unmatched describes the lines printed that the README does not show.
func (s *session) unmatched() string {
	var b strings.Builder
	for _, p := range s.procs {
		for _, l := range p.unread {
			b.WriteString("\n\t" + p.line + ": " + strconv.Quote(l))
		}
	}
	return b.String()
}

// stderrs describes what the processes said on stderr.
func (s *session) stderrs() string {
	var b strings.Builder
	for _, p := range s.procs {
		if p.stderr.String() != "" {
			b.WriteString("\n\t" + p.line + ": stderr " + strconv.Quote(p.stderr.String()))
		}
	}
	return b.String()
}

// stop sends SIGINT (Ctrl-C) to the processes still running and checks
// that the listener exits with status 0, that none said anything on stderr
// and that none printed lines the README does not show.
func (s *session) stop() {
	t := s.t
	t.Helper()
	for _, p := range s.procs {
		if p.cmd.ProcessState != nil {
			continue
		}
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		<-p.done
		err := p.cmd.Wait()
		// redis-cli exits on SIGINT as it pleases; the listener must
		// stop cleanly.
		if strings.Contains(p.line, "-role listener") && err != nil {
			t.Errorf("%s: after SIGINT: %v (stderr %q)", p.line, err, p.stderr.String())
		}
		if p.stderr.String() != "" {
			t.Errorf("%s: stderr %q", p.line, p.stderr.String())
		}
	}
	for {
		select {
		case l := <-s.lines:
			l.p.unread = append(l.p.unread, l.text)
			continue
		default:
		}
		break
	}
	if u := s.unmatched(); u != "" {
		t.Errorf("printed and not in the README:%s", u)
	}
}

// TestTwoProcesses runs a listener process and a publisher process
// against one redis-server, with plain Redis clients on the channel: a
// go-redis subscriber and redis-cli SUBSCRIBE see the publisher's messages
// as their text on a raw route and as envelopes with -envelope, and what
// redis-cli PUBLISH sends reaches the listener either way. The listener
// prints every notification, in order, and exits with status 0 on SIGINT.
func TestTwoProcesses(t *testing.T) {
	srv := redistest.Start(t, nil)
	for _, tc := range []struct {
		name     string
		flags    []string
		channel  string
		envelope bool
	}{
		{"default", nil, "notifications", false},
		{"prefix", []string{"-prefix", "test:"}, "test:notifications", false},
		{"envelope", []string{"-envelope"}, "notifications", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := func(role string) []string {
				return append(slices.Clone(tc.flags), "-redis", srv.URL(), "-role", role)
			}
			lines := progtest.Start(t, exec.Command(built(t), args("listener")...))
			how := ""
			if tc.envelope {
				how = ", enveloped"
			}
			if want := "listener ready on Redis channel " + tc.channel + how + " (Ctrl-C to stop)"; lines.Next(t, waitTimeout) != want {
				t.Fatalf("first line is not %q", want)
			}

			// Plain Redis clients on the channel: go-redis, which gives
			// the exact bytes, and redis-cli, whose output is a line per
			// field when it does not print to a terminal.
			rdb := srv.Client(t)
			plain := rdb.Subscribe(context.Background(), tc.channel)
			defer plain.Close()
			if _, err := plain.Receive(context.Background()); err != nil {
				t.Fatal(err)
			}
			var cli *progtest.Proc
			subscribers := 2 // the listener and go-redis
			if !tc.envelope {
				_, port, _ := strings.Cut(srv.Addr(), ":")
				cli = progtest.Start(t, exec.Command("redis-cli", "-h", "127.0.0.1", "-p", port, "SUBSCRIBE", tc.channel))
				for _, want := range []string{"subscribe", tc.channel, "1"} {
					if got := cli.Next(t, waitTimeout); got != want {
						t.Fatalf("redis-cli SUBSCRIBE printed %q, want %q", got, want)
					}
				}
				subscribers++
			}

			out, err := exec.Command(built(t), args("publisher")...).Output()
			if err != nil {
				t.Fatalf("publisher: %v", err)
			}
			wantPub := "publisher sends: New message from user123\n" +
				"publisher sends: Important update!\n" +
				"publisher sent 2 messages to Redis channel " + tc.channel + "\n"
			if string(out) != wantPub {
				t.Errorf("publisher printed:\n%s\nwant:\n%s", out, wantPub)
			}
			for _, msg := range messages {
				if got, want := lines.Next(t, waitTimeout), "listener received on notifications: "+msg; got != want {
					t.Fatalf("listener printed %q, want %q", got, want)
				}
			}
			checkPlain(t, plain.Channel(), tc.envelope)
			if cli != nil {
				for _, msg := range messages {
					for _, want := range []string{"message", tc.channel, msg} {
						if got := cli.Next(t, waitTimeout); got != want {
							t.Fatalf("redis-cli SUBSCRIBE printed %q, want %q", got, want)
						}
					}
				}
			}

			// A plain Redis client publishes. redis-cli prints the number
			// of subscribers that got it.
			n, err := srv.CLI("PUBLISH", tc.channel, "hi")
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(n) != strconv.Itoa(subscribers) {
				t.Errorf("redis-cli PUBLISH reached %q subscribers, want %d", n, subscribers)
			}
			if got, want := lines.Next(t, waitTimeout), "listener received on notifications: hi"; got != want {
				t.Fatalf("listener printed %q, want %q", got, want)
			}

			if err := lines.Interrupt(); err != nil {
				t.Fatal(err)
			}
			if err := lines.Wait(); err != nil {
				t.Fatalf("listener after SIGINT: %v (stderr %q)", err, lines.Stderr())
			}
			if lines.Stderr() != "" {
				t.Errorf("listener stderr: %q", lines.Stderr())
			}
		})
	}
}

// checkPlain checks what a plain Redis subscriber received from the
// publisher: each message as its text, in order, on a raw route. With
// envelopes, messages that start with the envelope's magic bytes (0xB5
// 0x1E) and carry the texts: the bridge may send both events in one batch
// message.
func checkPlain(t *testing.T, msgs <-chan *redis.Message, envelope bool) {
	t.Helper()
	var got []string
	for len(got) < len(messages) {
		select {
		case m := <-msgs:
			got = append(got, m.Payload)
		case <-time.After(waitTimeout):
			t.Fatalf("the plain subscriber got %q, want the publisher's %d messages", got, len(messages))
		}
		if !envelope {
			continue
		}
		if p := got[len(got)-1]; !strings.HasPrefix(p, "\xb5\x1e") {
			t.Fatalf("message %q is not an envelope", p)
		}
		all := strings.Join(got, "")
		if strings.Contains(all, messages[0]) && strings.Contains(all, messages[1]) {
			return
		}
	}
	if envelope {
		t.Errorf("the envelopes %q do not carry both messages", got)
		return
	}
	for i, p := range got {
		if p != messages[i] {
			t.Errorf("plain subscriber got %q, want %q", p, messages[i])
		}
	}
}

// pythonNotifier is the classic redis-py notifier on the channel
// "notifications": it subscribes, says "ready", prints the first argv[3]
// messages it receives, as text, then publishes one of its own.
const pythonNotifier = `
import sys, redis
r = redis.StrictRedis(host=sys.argv[1], port=int(sys.argv[2]))
p = r.pubsub()
p.subscribe('notifications')

def next_message(kind):
    while True:
        m = p.get_message(timeout=20)
        if m is None:
            sys.exit('no %s message in time' % kind)
        if m['type'] == kind:
            return m

next_message('subscribe')
print('ready', flush=True)
for _ in range(int(sys.argv[3])):
    m = next_message('message')
    print('received on %s: %s' % (m['channel'].decode(), m['data'].decode('utf-8')), flush=True)
r.publish('notifications', 'hi from redis-py')
`

// TestRedisPy runs the classic redis-py notifier against the listener and
// the publisher, with their default flags: it receives the publisher's
// messages as text, and the listener receives its message.
func TestRedisPy(t *testing.T) {
	py := needPython(t)
	srv := redistest.Start(t, nil)
	lines := progtest.Start(t, exec.Command(built(t), "-redis", srv.URL(), "-role", "listener"))
	if got := lines.Next(t, waitTimeout); !strings.HasPrefix(got, "listener ready") {
		t.Fatalf("listener printed %q", got)
	}

	host, port, _ := strings.Cut(srv.Addr(), ":")
	pyLines := progtest.Start(t, exec.Command(py, "-c", pythonNotifier, host, port, strconv.Itoa(len(messages))))
	if got := pyLines.Next(t, waitTimeout); got != "ready" {
		t.Fatalf("redis-py printed %q (stderr %q)", got, pyLines.Stderr())
	}

	if out, err := exec.Command(built(t), "-redis", srv.URL(), "-role", "publisher").CombinedOutput(); err != nil {
		t.Fatalf("publisher: %v: %s", err, out)
	}
	for _, msg := range messages {
		if got, want := pyLines.Next(t, waitTimeout), "received on notifications: "+msg; got != want {
			t.Errorf("redis-py printed %q, want %q", got, want)
		}
	}
	if err := pyLines.Wait(); err != nil {
		t.Fatalf("redis-py: %v (stderr %q)", err, pyLines.Stderr())
	}
	for _, want := range append(messages, "hi from redis-py") {
		if got := lines.Next(t, waitTimeout); got != "listener received on notifications: "+want {
			t.Errorf("listener printed %q, want the notification %q", got, want)
		}
	}

	if err := lines.Interrupt(); err != nil {
		t.Fatal(err)
	}
	if err := lines.Wait(); err != nil || lines.Stderr() != "" {
		t.Errorf("listener after SIGINT: %v, stderr %q", err, lines.Stderr())
	}
}

// needPython returns a Python interpreter that has redis-py (the Debian
// package python3-redis, which the test command installs). Without one
// the test is skipped, or fails under CI.
func needPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(py); err == nil && exec.Command(path, "-c", "import redis").Run() == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no python3 with redis-py: the test command installs python3-redis")
	}
	t.Skip("no python3 with redis-py (apt-get install python3-redis)")
	return ""
}

// TestNoSecret checks that no password of -redis is printed, whatever is
// wrong with it, for either role.
func TestNoSecret(t *testing.T) {
	srv := redistest.Start(t, nil)
	for _, role := range []string{"listener", "publisher"} {
		progtest.NoSecret(t, srv.Addr(), func(url string) *exec.Cmd {
			return exec.Command(built(t), "-redis", url, "-role", role)
		})
	}
}
