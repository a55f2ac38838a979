//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"github.com/busline/bus/internal/progtest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// browserTimeout bounds the whole browser test; it takes about 30 s.
const browserTimeout = 4 * time.Minute

// TestBrowser builds and runs the browser test program (./browsertest):
// two pages in headless Chromium against two instances and a
// redis-server, through messages, a Redis outage, a bad room name, an
// empty room and a room new to an instance while Redis is down. Without
// chromium on PATH it is skipped, or fails under CI=true, where the test
// command installs it.
func TestBrowser(t *testing.T) {
	chromium := progtest.Need(t, "chromium", "apt-get install chromium")
	dir := t.TempDir()
	bin := filepath.Join(dir, "browsertest")
	if out, err := exec.Command("go", "build", "-o", bin, "./browsertest").CombinedOutput(); err != nil {
		t.Fatalf("go build ./browsertest: %v\n%s", err, out)
	}

	limit := browserTimeout
	if d, ok := t.Deadline(); ok && time.Until(d)-10*time.Second < limit {
		limit = time.Until(d) - 10*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	shots := filepath.Join(dir, "screenshots")
	cmd := exec.CommandContext(ctx, bin, "-chromium", chromium, "-screenshots", shots)
	// Its own process group: on timeout, Chromium, the instances and
	// redis-server go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	// Its temporary files (the chat's build, Chromium's profile) go in
	// dir, removed even when the program is killed.
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Cleanup(func() {
		// Whatever is left of the group, after a failure: ESRCH when
		// nothing is.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	switch {
	case ctx.Err() != nil:
		t.Fatalf("browsertest did not finish in %v:\n%s", limit, &out)
	case err != nil:
		t.Fatalf("browsertest: %v:\n%s", err, &out)
	case !strings.HasSuffix(out.String(), "PASS\n"):
		t.Fatalf("browsertest did not say PASS:\n%s", &out)
	}
	t.Logf("browsertest:\n%s", &out)
	for i, name := range []string{"1-empty", "2-messages", "3-down", "4-resuming", "5-back", "6-bad-room", "7-empty-room", "8-new-room-down", "9-new-room-back"} {
		data, err := os.ReadFile(filepath.Join(shots, name+".png"))
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("screenshot %d: %v", i+1, orElse(err, fmt.Errorf("%s.png is not a PNG", name)))
		}
	}
}

// orElse returns err, or else alt.
func orElse(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}
