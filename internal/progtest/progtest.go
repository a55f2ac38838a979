// Package progtest serves tests that run their package's program as a
// separate process, as a user would: it builds the program once, on first
// use, runs processes whose output the test reads line by line with
// bounded waits ([Start]), and at the end of the tests checks that no
// goroutine leaked and removes the build.
package progtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// Program is the main package in the current directory of a test binary
// (its package's directory), built on first use: a run of only in-process
// tests builds nothing. Its methods are safe for concurrent use.
type Program struct {
	name string
	once sync.Once
	dir  string // removed by Main
	path string
	err  error
}

// New returns the program of the test's package, to be built as name.
func New(name string) *Program { return &Program{name: name} }

// Path returns the path of the built program, building it with go build
// on the first call; a failed build fails t, then and on every later call.
func (p *Program) Path(t testing.TB) string {
	t.Helper()
	p.once.Do(func() {
		if p.dir, p.err = os.MkdirTemp("", p.name+"-test"); p.err != nil {
			return
		}
		p.path = filepath.Join(p.dir, p.name)
		if out, err := exec.Command("go", "build", "-o", p.path, ".").CombinedOutput(); err != nil {
			p.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.path
}

// Main runs the tests of m; if they pass, it fails the run when
// goroutines leaked (goleak). It then removes the build of p, failing the
// run if that fails, and exits with the run's code. Call it from TestMain.
func Main(m *testing.M, p *Program) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	if p.dir != "" {
		// A build left behind is a leak like a goroutine left behind:
		// say so and fail the run rather than litter the temp directory.
		if err := os.RemoveAll(p.dir); err != nil {
			fmt.Fprintln(os.Stderr, "progtest: removing the build:", err)
			code = 1
		}
	}
	os.Exit(code)
}
