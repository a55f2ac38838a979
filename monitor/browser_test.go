package monitor_test

import (
	"bytes"
	"context"
	"github.com/busline/bus/internal/progtest"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/monitor"
)

// chromiumTimeout bounds each run of Chromium.
const chromiumTimeout = 30 * time.Second

// TestBrowser loads the page in headless Chromium, which polls it every
// 200 ms for 3 s of virtual time, and publishes events between its first
// and second poll: the page's counters must change by what was
// published, its drop tile must turn to an alert and the error must be
// listed. Without chromium it is skipped, or fails under CI=true. With
// MONITOR_SCREENSHOT set to a path, it also saves a screenshot there.
func TestBrowser(t *testing.T) {
	chromium := progtest.Need(t, "chromium", "apt-get install chromium")
	m := monitor.New(nil)
	b := bus.New(&bus.Options{Stats: true, OnError: m.OnError(func(error) {}), DropReportInterval: time.Nanosecond})
	m.SetBus(b)
	startBridge(t, m, b, "instance-a")
	release := make(chan struct{})
	defer func() {
		close(release)
		_ = b.Close(ctx)
	}()
	if _, err := b.SubscribeWith("orders.*", func(context.Context, bus.Event) { <-release },
		&bus.SubscribeOptions{Name: "stuck projection", Queue: 4, Overflow: bus.DropNewest}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SubscribeWith("orders.created", func(context.Context, bus.Event) {}, &bus.SubscribeOptions{Name: "mailer"}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		_ = b.Publish(ctx, "orders.created", i)
	}
	var polls atomic.Int64
	var traffic atomic.Bool // for the screenshot: events at every poll
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/all") {
			m.ServeHTTP(w, r)
			return
		}
		switch n := polls.Add(1); {
		case n == 2:
			// Between the page's first and second look.
			for i := range 50 {
				_ = b.Publish(ctx, "orders.created", i)
			}
			m.OnError(func(error) {})(&bridge.GapError{Source: "instance-b", Channel: "app:orders.created", Expected: 7, Got: 12})
		case traffic.Load():
			for i := range 20 + n*7%40 {
				_ = b.Publish(ctx, "orders.paid", i)
			}
		}
		m.ServeHTTP(w, r)
	}))
	defer srv.Close()
	url := srv.URL + "/debug/busline/?interval=200"

	dom := runChromium(t, chromium, "--dump-dom", url)
	attr := func(name string) string {
		match := regexp.MustCompile(`<body[^>]*\s` + name + `="([^"]*)"`).FindStringSubmatch(dom)
		if match == nil {
			t.Fatalf("no %s on the page's body:\n%.2000s", name, dom)
		}
		return match[1]
	}
	samples, _ := strconv.Atoi(attr("data-samples"))
	history := strings.Split(attr("data-history"), ",")
	if samples < 3 || len(history) != samples {
		t.Fatalf("the page polled %d times (history %v), want at least 3", samples, history)
	}
	first, _ := strconv.Atoi(history[0])
	last, _ := strconv.Atoi(history[len(history)-1])
	if first < 10 || last-first != 50 {
		t.Errorf("published seen by the page: %v, want a first value of at least 10 and 50 more after", history)
	}
	for _, want := range []string{
		`class="tile alert" id="tile-dropped"`,
		`id="tile-published"`,
		"bridge: sequence gap",
		"stuck projection",
		"DropNewest",
		`class="status ok"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q:\n%.3000s", want, dom)
		}
	}
	if match := regexp.MustCompile(`id="v-dropped" data-raw="(\d+)"`).FindStringSubmatch(dom); match == nil || match[1] == "0" {
		t.Errorf("dropped tile: %v, want drops counted", match)
	}
	if match := regexp.MustCompile(`<polyline points="([^"]+)"`).FindStringSubmatch(dom); match == nil || len(strings.Fields(match[1])) < 2 {
		t.Errorf("no chart drawn: %v", match)
	}

	if shot := os.Getenv("MONITOR_SCREENSHOT"); shot != "" {
		abs, err := filepath.Abs(shot)
		if err != nil {
			t.Fatal(err)
		}
		traffic.Store(true)
		runChromium(t, chromium, "--screenshot="+abs, "--window-size=1280,1100", url)
		data, err := os.ReadFile(abs)
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
			t.Fatalf("screenshot %s: %v", abs, err)
		}
		t.Logf("screenshot in %s", abs)
	}
}

// runChromium runs headless Chromium on url with 3 s of virtual time, so
// that the page's timers fire quickly, and returns what it wrote.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	dir := t.TempDir()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile"),
		"--virtual-time-budget=3000"}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+dir, "HOME="+dir)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, &errOut)
	}
	return out.String()
}
