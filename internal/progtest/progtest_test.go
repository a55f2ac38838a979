package progtest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	// Main itself exits the process: it is exercised by the packages that
	// use it (cmd/buscat, examples). Here, the build.
	os.Exit(m.Run())
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
