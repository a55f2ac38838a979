package progtest

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Proc is a running process whose stdout is read line by line, as a user
// at a terminal reads it. Its methods must be called from the goroutine of
// the test given to [Start]: Next calls t.Fatalf.
type Proc struct {
	// Cmd is the command, started.
	Cmd *exec.Cmd

	lines  chan string   // stdout, closed at its end
	done   chan struct{} // closed after lines
	stderr *Buffer       // nil when the caller took Cmd.Stderr

	waitOnce sync.Once
	waitErr  error
}

// Start starts cmd and reads its stdout line by line. When cmd.Stderr is
// nil, Start collects stderr, which [Proc.Stderr] returns; a caller that
// reads stderr itself sets cmd.Stderr (or calls StderrPipe) first. Up to
// 100 lines wait to be read; beyond that the reader, and so a program
// that writes more, waits. A failure to start fails t. A process still
// running at the end of the test is killed and reaped.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, lines: make(chan string, 100), done: make(chan struct{})}
	if cmd.Stderr == nil {
		p.stderr = &Buffer{}
		cmd.Stderr = p.stderr
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	go func() {
		defer close(p.done)
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // it may have exited already: Wait says how
			for range p.lines {    // unblock the reader
			}
			_ = p.Wait() // the test is over: nothing to report
		}
	})
	return p
}

// Next returns the next line of stdout. It calls t.Fatalf, with the exit
// status and stderr, when stdout ends first, and when no line comes
// within timeout.
func (p *Proc) Next(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if ok {
			return l
		}
		t.Fatalf("%v exited (%v) before printing the line expected (stderr %q)", p.Cmd.Args, p.Wait(), p.Stderr())
	case <-time.After(timeout):
		t.Fatalf("%v: no line in %v (stderr %q)", p.Cmd.Args, timeout, p.Stderr())
	}
	return ""
}

// Lines returns stdout's lines, for a test that reads them itself; the
// channel is closed at the end of stdout. Lines read from it are not
// returned by Next.
func (p *Proc) Lines() <-chan string { return p.lines }

// Interrupt sends the process SIGINT, as Ctrl-C at a terminal does.
func (p *Proc) Interrupt() error { return p.Cmd.Process.Signal(os.Interrupt) }

// Wait blocks until stdout ends and the process exits, and returns the
// exit error of exec.Cmd.Wait; later calls return the same. Lines not read
// yet stay readable, but a process with more than 100 of them waits for
// them to be read: read them first.
func (p *Proc) Wait() error {
	p.waitOnce.Do(func() {
		<-p.done
		p.waitErr = p.Cmd.Wait()
	})
	return p.waitErr
}

// Stderr returns what the process has written on stderr so far, when
// [Start] collects it, or "".
func (p *Proc) Stderr() string {
	if p.stderr == nil {
		return ""
	}
	return p.stderr.String()
}

// Buffer is a bytes.Buffer safe for concurrent use: the stderr of a
// process, read while the process writes it. A zero Buffer is empty and
// ready to use; it must not be copied after first use.
type Buffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Run runs cmd to its end and returns its exit status (0 on success, -1
// when it did not exit by itself: it could not start, or a signal killed
// it), what it wrote on stderr, and the error of exec.Cmd.Run. stderr is
// collected unless cmd.Stderr is set, and then "".
func Run(cmd *exec.Cmd) (status int, stderr string, err error) {
	var buf Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &buf
	}
	err = cmd.Run()
	status = -1
	if cmd.ProcessState != nil {
		status = cmd.ProcessState.ExitCode()
	}
	return status, buf.String(), err
}

// RefusedAddr returns a loopback address, "127.0.0.1:PORT", where nothing
// listens: a port just closed. A failure to listen fails t.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
