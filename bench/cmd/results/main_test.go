package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sample is go test -v -bench output with two runs, a skipped library, extra
// metrics, a parent benchmark line without results, and noise.
const sample = `goos: linux
goarch: amd64
pkg: github.com/busline/bus/bench
cpu: AMD EPYC
BenchmarkPublishExact
BenchmarkPublishExact/subs=1
BenchmarkPublishExact/subs=1/direct
BenchmarkPublishExact/subs=1/direct-2         	1000000	         2.000 ns/op	       0 B/op	       0 allocs/op
BenchmarkPublishExact/subs=1/busline
BenchmarkPublishExact/subs=1/busline-2        	1000000	        10.00 ns/op	       0 B/op	       0 allocs/op
BenchmarkPublishExact/subs=1/eventbus
BenchmarkPublishExact/subs=1/eventbus-2       	1000000	       300.0 ns/op	     100 B/op	       3 allocs/op
BenchmarkPublishExact/subs=1/cskr
    scenario_test.go:62: n/a: delivers only through channels
--- SKIP: BenchmarkPublishExact/subs=1/cskr
BenchmarkPublishExact/subs=1/direct-2         	1000000	         4.000 ns/op	       0 B/op	       0 allocs/op
BenchmarkPublishExact/subs=1/busline-2        	1000000	        12.00 ns/op	       0 B/op	       0 allocs/op
BenchmarkPublishExact/subs=1/busline-2        	1000000	        11.00 ns/op	       0 B/op	       0 allocs/op
BenchmarkPublishExact/subs=1/eventbus-2       	1000000	       500.0 ns/op	     100 B/op	       3 allocs/op
BenchmarkAsyncLatency/chan-2   	   10000	     60000 ns/op	        20.00 p50-µs	        80.00 p99-µs	       0 B/op	       0 allocs/op
BenchmarkAsyncLatency/busline-2	   10000	     50000 ns/op	        10.00 p50-µs	        90.00 p99-µs	       0 B/op	       0 allocs/op
BenchmarkAsyncLatency/gsl
    scenario_test.go:70: n/a: a router
--- SKIP: BenchmarkAsyncLatency/gsl
PASS
ok  	github.com/busline/bus/bench	12.3s
`

func TestParse(t *testing.T) {
	rs, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.order) != 2 {
		t.Fatalf("%d scenarios, want 2", len(rs.order))
	}
	exact := rs.byKey["PublishExact/subs=1"]
	if exact == nil {
		t.Fatal("no PublishExact/subs=1")
	}
	for _, tt := range []struct {
		lib    string
		unit   string
		median float64
		runs   int
		na     string
	}{
		{"direct", "ns/op", 3, 2, ""},
		{"busline", "ns/op", 11, 3, ""},
		{"eventbus", "allocs/op", 3, 2, ""},
		{"eventbus", "ns/op", 400, 2, ""},
		{"cskr", "", 0, 0, "delivers only through channels"},
	} {
		var r *result
		for _, x := range exact.results {
			if x.lib == tt.lib {
				r = x
			}
		}
		if r == nil {
			t.Errorf("%s: missing", tt.lib)
			continue
		}
		if r.na != tt.na {
			t.Errorf("%s: na = %q, want %q", tt.lib, r.na, tt.na)
		}
		if r.runs() != tt.runs {
			t.Errorf("%s: %d runs, want %d", tt.lib, r.runs(), tt.runs)
		}
		if tt.unit != "" {
			if got, _ := r.median(tt.unit); got != tt.median {
				t.Errorf("%s: median %s = %v, want %v", tt.lib, tt.unit, got, tt.median)
			}
		}
	}
	lat := rs.byKey["AsyncLatency"]
	if got := len(lat.results); got != 3 {
		t.Fatalf("AsyncLatency: %d results, want 3", got)
	}
	if got, _ := lat.results[1].median("p99-µs"); got != 90 {
		t.Errorf("busline p99 = %v, want 90", got)
	}
}

func TestRender(t *testing.T) {
	rs, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	render(&b, rs, meta{Date: "D", CPU: "CPU X", Cores: 2, Go: "go1.26", Command: "go test -bench .",
		Peers: [][2]string{{"github.com/asaskevich/EventBus", "v0.0.0-x"}}})
	out := b.String()
	for _, want := range []string{
		"- Machine: CPU X, 2 cores",
		"- Go: go1.26",
		"github.com/asaskevich/EventBus v0.0.0-x",
		"grain of salt",
		"| Scenario | direct | busline | eventbus | cskr | chan | gsl |",
		"| PublishExact/subs=1 | 3.00 | **11.0** | 400 | n/a |  |  |",
		"| Library | ns/op | allocs/op | vs Busline | vs direct call | runs, or why n/a |",
		"| direct | 3.00 | 0 | 0.27× | 1.00× | 2 |",
		"| busline | 11.0 | 0 | 1.00× | 3.67× | 3 |",
		"| eventbus | 400 | 3.00 | 36.36× | 133.33× | 2 |",
		"| cskr | n/a |  |  |  | delivers only through channels |",
		"| AsyncLatency (p50-µs) |  | **10.0** |  |  | 20.0 | n/a |",
		"| Library | ns/op | allocs/op | vs Busline | vs chan | p50-µs | p99-µs | runs, or why n/a |",
		"| busline | 50,000 | 0 | 1.00× | 0.83× | 10.0 | 90.0 | 1 |",
		"| gsl | n/a |  |  |  |  |  | a router |",
		"## Where Busline loses",
		"Nowhere in this run",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestLosses(t *testing.T) {
	for _, tt := range []struct {
		in, want string
	}{
		{"BenchmarkS/busline-2 1 10 ns/op\nBenchmarkS/gsl-2 1 5 ns/op\nBenchmarkS/direct-2 1 1 ns/op\n",
			"- S: gsl 5.00 ns/op vs Busline's 10.0 (0.50×)\n"},
		{"BenchmarkS/busline-2 1 10 ns/op\nBenchmarkS/gsl-2 1 50 ns/op\nBenchmarkS/direct-2 1 1 ns/op\n",
			"Nowhere in this run"},
		{"BenchmarkLatency/busline-2 1 10 ns/op 9 p50-µs\nBenchmarkLatency/x-2 1 50 ns/op 8 p50-µs\n",
			"- Latency: x 8.00 p50-µs vs Busline's 9.00 (0.89×)\n"},
		{"BenchmarkS/busline-2 1 10 ns/op\nBenchmarkS/busline-nocache-2 1 5 ns/op\n", "Nowhere in this run"},
	} {
		rs, err := parse(strings.NewReader(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		renderLosses(&b, rs)
		if !strings.Contains(b.String(), tt.want) {
			t.Errorf("losses of %q:\n%s\nwant %q", tt.in, b.String(), tt.want)
		}
	}
}

func TestPeerVersions(t *testing.T) {
	for _, tt := range []struct {
		gomod string
		want  [][2]string
	}{
		{"module x\n\nrequire github.com/gobwas/glob v1.1.0\n", [][2]string{{"github.com/gobwas/glob", "v1.1.0"}}},
		{"require (\n\tgithub.com/redis/go-redis/v9 v9.23.0\n\tgithub.com/cskr/pubsub/v2 v2.0.2 // indirect\n\tgithub.com/other/x v1.0.0\n)\n",
			[][2]string{{"github.com/cskr/pubsub/v2", "v2.0.2"}, {"github.com/redis/go-redis/v9", "v9.23.0"}}},
		{"module x\n", nil},
	} {
		got := peerVersions(tt.gomod)
		if len(got) != len(tt.want) {
			t.Errorf("peerVersions(%q) = %v, want %v", tt.gomod, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("peerVersions(%q)[%d] = %v, want %v", tt.gomod, i, got[i], tt.want[i])
			}
		}
	}
}

func TestFormatNum(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {1.234, "1.23"}, {12.34, "12.3"}, {123.4, "123"}, {1234.5, "1,234"}, {1234567, "1,234,567"},
	} {
		if got := formatNum(tt.v); got != tt.want {
			t.Errorf("formatNum(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

// TestRun goes from a file to a file.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	in, out, mod := filepath.Join(dir, "raw.txt"), filepath.Join(dir, "R.md"), filepath.Join(dir, "go.mod")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mod, []byte("module x\nrequire github.com/gobwas/glob v1.1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(dir, "notes.md")
	if err := os.WriteFile(notes, []byte("Because of X.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, out, mod, "cmd", notes, "abc123"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "## PublishExact/subs=1") || !strings.Contains(string(data), "github.com/gobwas/glob v1.1.0") ||
		!strings.Contains(string(data), "Because of X.") || !strings.Contains(string(data), "- Busline: abc123") {
		t.Errorf("RESULTS lacks a scenario or a peer:\n%s", data)
	}
	if err := os.WriteFile(in, []byte("PASS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, out, mod, "cmd", "", ""); err == nil {
		t.Error("run with no results: no error")
	}
}
