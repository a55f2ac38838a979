package main

import (
	"fmt"
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
		"| PublishExact/subs=1 | 3.00 ±∞ | **11.0 ±∞** | 400 ±∞ | n/a |  |  |",
		"| Library | ns/op | allocs/op | vs Busline | vs direct call | runs, or why n/a |",
		"| direct | 3.00 ±∞ | 0 | 0.27× ~ (not significant) | 1.00× | 2 |",
		"| busline | 11.0 ±∞ | 0 | 1.00× | 3.67× ~ (not significant) | 3 |",
		"| eventbus | 400 ±∞ | 3.00 | 36.36× ~ (not significant) | 133.33× ~ (not significant) | 2 |",
		"| cskr | n/a |  |  |  | delivers only through channels |",
		"| AsyncLatency (p50-µs) |  | **10.0** |  |  | 20.0 | n/a |",
		"| Library | ns/op | allocs/op | vs Busline (p50-µs) | vs chan | p50-µs | p99-µs | runs, or why n/a |",
		"| busline | 50,000 | 0 | 1.00× | 0.50× ~ (not significant) | 10.0 | 90.0 | 1 |",
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

// runs returns benchmark lines for name with one line per value: "ns/op"
// values, plus unit values when unit is not empty.
func runs(name string, unit string, vs ...float64) string {
	var b strings.Builder
	for _, v := range vs {
		if unit == "" {
			fmt.Fprintf(&b, "Benchmark%s-2 1 %v ns/op\n", name, v)
		} else {
			fmt.Fprintf(&b, "Benchmark%s-2 1 1000 ns/op %v %s\n", name, v, unit)
		}
	}
	return b.String()
}

func TestLosses(t *testing.T) {
	for _, tt := range []struct {
		name     string
		in       string
		want     []string
		dontWant []string
	}{
		{"significant loss", runs("S/busline", "", 10, 11, 10, 12, 10) + runs("S/gsl", "", 5, 5, 6, 5, 5) + runs("S/direct", "", 1, 1, 1, 1, 1),
			[]string{"- S: gsl 5.00 ns/op vs Busline's 10.0 (0.50×, p=0.008 n=5)\n"}, []string{"within the noise", "Nowhere"}},
		{"win", runs("S/busline", "", 10, 10, 10, 10, 10) + runs("S/gsl", "", 50, 50, 50, 50, 50),
			[]string{"Nowhere in this run"}, []string{"- S:"}},
		{"a loss within the noise", runs("S/busline", "", 10, 5, 20, 8, 12) + runs("S/gsl", "", 9, 6, 19, 7, 13),
			[]string{"Nowhere in this run", "within the noise of the run:", "- S: gsl 9.00 ns/op vs Busline's 10.0 (0.90×, ~ not significant: p="},
			nil},
		{"too few runs to tell", runs("S/busline", "", 10) + runs("S/gsl", "", 5),
			[]string{"Nowhere in this run", "- S: gsl 5.00 ns/op vs Busline's 10.0 (0.50×, ~ not significant: p=1.000 n=1)"}, nil},
		{"latency on p50", runs("Latency/busline", "p50-µs", 9, 9, 9, 9, 9) + runs("Latency/x", "p50-µs", 8, 8, 8, 8, 8),
			[]string{"- Latency: x 8.00 p50-µs vs Busline's 9.00 (0.89×, p=0.008 n=5)\n"}, nil},
		{"sustained on p99", runs("SustainedLatency/rate=10k/busline", "p99-µs", 900, 900, 900, 900, 900) +
			runs("SustainedLatency/rate=10k/go-redis", "p99-µs", 800, 800, 800, 800, 800),
			[]string{"- SustainedLatency/rate=10k: go-redis 800 p99-µs vs Busline's 900 (0.89×, p=0.008 n=5)\n"}, nil},
		{"own variants are not peers", runs("S/busline", "", 10, 10, 10, 10, 10) + runs("S/busline-nocache", "", 5, 5, 5, 5, 5),
			[]string{"Nowhere in this run"}, []string{"- S:"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			renderLosses(&b, rs)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("losses lack %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(b.String(), w) {
					t.Errorf("losses have %q:\n%s", w, b.String())
				}
			}
		})
	}
}

// TestRatioSignificance: the ratio cell is marked exactly when benchmath's
// U-test cannot tell the samples apart.
func TestRatioSignificance(t *testing.T) {
	for _, tt := range []struct {
		name    string
		a, b    []float64
		want    string
		wantSig bool
	}{
		{"apart", []float64{20, 21, 20, 22, 20}, []float64{10, 10, 11, 10, 10}, "2.00×", true},
		{"overlapping", []float64{10, 12, 9, 11, 10}, []float64{10, 11, 9, 12, 10}, "1.00× ~ (not significant)", false},
		{"one run each", []float64{20}, []float64{10}, "2.00× ~ (not significant)", false},
		{"three runs each cannot reach alpha", []float64{30, 31, 32}, []float64{10, 11, 12}, "2.82× ~ (not significant)", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ra := &result{values: map[string][]float64{"ns/op": tt.a}}
			rb := &result{values: map[string][]float64{"ns/op": tt.b}}
			if got := ratio(ra, rb, "ns/op"); got != tt.want {
				t.Errorf("ratio = %q, want %q", got, tt.want)
			}
			if got, _ := ra.significant(rb, "ns/op"); got != tt.wantSig {
				t.Errorf("significant = %v, want %v", got, tt.wantSig)
			}
		})
	}
	r := &result{values: map[string][]float64{"ns/op": {1, 2}}}
	if got := ratio(r, r, "ns/op"); got != "1.50×" && got != "1.00×" {
		t.Errorf("ratio to itself = %q", got)
	}
	if got := ratio(r, nil, "ns/op"); got != "" {
		t.Errorf("ratio to nothing = %q, want empty", got)
	}
	if got := ratio(r, &result{values: map[string][]float64{}}, "ns/op"); got != "" {
		t.Errorf("ratio to a result without values = %q, want empty", got)
	}
}

func TestCell(t *testing.T) {
	for _, tt := range []struct {
		vs   []float64
		want string
	}{
		{nil, ""},
		{[]float64{12.34}, "12.3"},
		{[]float64{10, 12}, "11.0 ±∞"},
		{[]float64{100, 96, 104, 100, 100}, "100 ±4%"},
		{[]float64{100, 90, 101, 100, 120}, "100 ±20%"},
	} {
		r := &result{values: map[string][]float64{"ns/op": tt.vs}}
		if got := r.cell("ns/op"); got != tt.want {
			t.Errorf("cell(%v) = %q, want %q", tt.vs, got, tt.want)
		}
	}
}

func TestBenchName(t *testing.T) {
	for _, tt := range []struct{ line, want string }{
		{"BenchmarkA/b/c-2 1 1 ns/op", "A/b/c"},
		{"BenchmarkBridgeThroughput/busline-uncoalesced-2 1 1 ns/op", "BridgeThroughput/busline-uncoalesced"},
		{"BenchmarkX/go-redis-one-call-16 1 1 ns/op", "X/go-redis-one-call"},
		{"BenchmarkX/rate=10k/busline 1 1 ns/op", "X/rate=10k/busline"}, // GOMAXPROCS=1: no suffix
	} {
		rs, err := parse(strings.NewReader(tt.line + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range rs.order {
			for _, r := range s.results {
				got = append(got, s.name+"/"+r.lib)
			}
		}
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("%q: names %v, want [%s]", tt.line, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"BenchmarkS/busline-2 1 10 ns/op 5\n", // a value without its unit
		"BenchmarkS/busline-2 x 10 ns/op\n",   // no iteration count
		"BenchmarkS/busline-2 1 ten ns/op\n",  // not a number
		"BenchmarkS/busline-2 1\n",            // no measurements
	} {
		if _, err := parse(strings.NewReader(in)); err == nil {
			t.Errorf("parse(%q): no error", in)
		}
	}
}

// FuzzParse: any input parses without a panic, or fails with an error;
// what parses renders without a panic, with every result under the
// scenario it was filed in.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add(runs("S/busline", "p50-µs", 1, 2, 3))
	f.Add("BenchmarkS/a-2 1 1 ns/op\n    x.go:1: n/a: why\n--- SKIP: BenchmarkS/b\n")
	f.Add("BenchmarkX 1 1 ns/op\nBenchmark/-2 1 NaN ns/op\n")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, s := range rs.order {
			if rs.byKey[s.name] != s {
				t.Fatalf("scenario %q not indexed", s.name)
			}
			for _, r := range s.results {
				if r.runs() > 0 {
					if _, ok := r.median("ns/op"); !ok {
						t.Fatalf("%s/%s: runs but no median", s.name, r.lib)
					}
				}
			}
		}
		var b strings.Builder
		render(&b, rs, meta{})
	})
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
