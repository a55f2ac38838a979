// Command results turns the output of the bench module's benchmarks
// (go test -v -bench ... -count N) into RESULTS.md: the machine, the Go and
// peer versions, a headline table, and per scenario a table of every
// library with the median ns/op and allocs/op over the runs and the
// confidence interval of each median, the ratios to Busline and to the
// direct call (or the channel, for asynchronous scenarios), marked "~ (not
// significant)" where a Mann-Whitney U-test cannot tell the two apart, the
// extra metrics the benchmark reported (events/s, p50, p99) and "n/a" with
// the reason for the libraries that cannot do the scenario. The statistics
// are golang.org/x/perf's benchmath (the code behind benchstat), and the
// results are read with its benchfmt.
//
// Usage, from bench/ (run.sh does this):
//
//	go run ./cmd/results -in out/raw.txt -out RESULTS.md -gomod go.mod -cmd "..."
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

func main() {
	in := flag.String("in", "out/raw.txt", "benchmark output (go test -v -bench)")
	out := flag.String("out", "RESULTS.md", "markdown file to write")
	gomod := flag.String("gomod", "go.mod", "the bench module's go.mod, for peer versions")
	cmd := flag.String("cmd", "", "the command that produced the output, to print")
	notes := flag.String("notes", "", "markdown file appended to the closing section (the why of the losses)")
	rev := flag.String("rev", "", "the revision of Busline measured, to print")
	flag.Parse()
	if err := run(*in, *out, *gomod, *cmd, *notes, *rev); err != nil {
		fmt.Fprintln(os.Stderr, "results:", err)
		os.Exit(1)
	}
}

func run(in, out, gomod, cmd, notes, rev string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	res, err := parse(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("parse %s: %w", in, err)
	}
	if len(res.order) == 0 {
		return fmt.Errorf("parse %s: no benchmark results", in)
	}
	modText, err := os.ReadFile(gomod)
	if err != nil {
		return err
	}
	m := meta{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		CPU:     cpuModel(),
		Cores:   runtime.NumCPU(),
		Go:      runtime.Version(),
		Peers:   peerVersions(string(modText)),
		Command: cmd,
		Rev:     rev,
	}
	if notes != "" {
		text, err := os.ReadFile(notes)
		if err != nil {
			return err
		}
		m.Notes = string(text)
	}
	var b strings.Builder
	render(&b, res, m)
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// A result is one library in one scenario: the values of each unit over
// the runs, or the reason it was skipped.
type result struct {
	lib    string
	values map[string][]float64
	units  []string // in the order first reported
	na     string
}

// A scenario is one table: a benchmark path without the library.
type scenario struct {
	name    string
	results []*result // in the order first seen
}

type results struct {
	order []*scenario
	byKey map[string]*scenario
}

func (rs *results) result(path string) *result {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return nil // a benchmark without sub-benchmarks is not ours
	}
	scen, lib := path[:i], path[i+1:]
	s := rs.byKey[scen]
	if s == nil {
		s = &scenario{name: scen}
		rs.byKey[scen] = s
		rs.order = append(rs.order, s)
	}
	for _, r := range s.results {
		if r.lib == lib {
			return r
		}
	}
	r := &result{lib: lib, values: map[string][]float64{}}
	s.results = append(s.results, r)
	return r
}

var (
	// "    scenario_test.go:42: n/a: reason", printed before the SKIP line.
	naLine   = regexp.MustCompile(`^\s+\S+\.go:\d+: n/a: (.*)$`)
	skipLine = regexp.MustCompile(`^\s*--- SKIP: Benchmark(\S+)$`)
)

// parse reads go test -v -bench output: the results with benchfmt, and the
// reasons of the libraries that skipped with "n/a: <reason>" from the -v
// lines around them.
func parse(r io.Reader) (*results, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	rs := &results{byKey: map[string]*scenario{}}
	br := benchfmt.NewReader(bytes.NewReader(data), "input")
	for br.Scan() {
		switch rec := br.Result().(type) {
		case *benchfmt.SyntaxError:
			return nil, rec
		case *benchfmt.Result:
			res := rs.result(benchName(rec.Name))
			if res == nil {
				continue
			}
			for _, v := range rec.Values {
				unit, val := v.Unit, v.Value
				if v.OrigUnit != "" { // benchfmt tidies ns/op into sec/op: keep ours
					unit, val = v.OrigUnit, v.OrigValue
				}
				if _, ok := res.values[unit]; !ok {
					res.units = append(res.units, unit)
				}
				res.values[unit] = append(res.values[unit], val)
			}
		}
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	var reason string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		if m := naLine.FindStringSubmatch(line); m != nil {
			reason = m[1]
			continue
		}
		if m := skipLine.FindStringSubmatch(line); m != nil {
			if reason != "" {
				if res := rs.result(m[1]); res != nil {
					res.na = reason
				}
			}
			reason = ""
		}
	}
	return rs, nil
}

// benchName returns a benchmark's name without "Benchmark" (which benchfmt
// drops) and without its -GOMAXPROCS suffix.
func benchName(n benchfmt.Name) string {
	base, parts := n.Parts()
	if len(parts) > 0 && bytes.HasPrefix(parts[len(parts)-1], []byte("-")) {
		parts = parts[:len(parts)-1]
	}
	return string(base) + string(bytes.Join(parts, nil))
}

// confidence is the level of the intervals around the medians. With the
// five runs of a full run, the narrowest interval benchmath can give
// around a median is the range from the lowest run to the highest, at
// 93.75% (at 95% it would need six runs: benchstat would print ±∞).
const confidence = 0.90

// thresholds are benchmath's: comparisons at alpha 0.05.
var thresholds = benchmath.DefaultThresholds

// sample returns the values of unit as a benchmath sample, or nil.
func (r *result) sample(unit string) *benchmath.Sample {
	vs := r.values[unit]
	if len(vs) == 0 {
		return nil
	}
	return benchmath.NewSample(slices.Clone(vs), &thresholds)
}

// median returns the median of the unit's values and whether there were
// any (benchmath's summary without assumptions, as benchstat's).
func (r *result) median(unit string) (float64, bool) {
	s := r.sample(unit)
	if s == nil {
		return 0, false
	}
	return benchmath.AssumeNothing.Summary(s, confidence).Center, true
}

// cell formats the median of unit with its confidence interval: "12.3
// ±4%", "12.3 ±∞" when there are too few runs for an interval at
// confidence, and the bare median for a single run. "" if there are none.
func (r *result) cell(unit string) string {
	s := r.sample(unit)
	if s == nil {
		return ""
	}
	sum := benchmath.AssumeNothing.Summary(s, confidence)
	out := formatNum(sum.Center)
	if len(s.Values) > 1 {
		out += " ±" + sum.PctRangeString()
	}
	return out
}

// significant says whether the values of unit in r and ref differ, by
// benchmath's test (Mann-Whitney U at alpha 0.05), and returns the test.
func (r *result) significant(ref *result, unit string) (bool, benchmath.Comparison) {
	a, b := r.sample(unit), ref.sample(unit)
	if a == nil || b == nil {
		return false, benchmath.Comparison{P: 1}
	}
	c := benchmath.AssumeNothing.Compare(a, b)
	return c.P <= c.Alpha, c
}

// runs returns how many runs a result had.
func (r *result) runs() int { return len(r.values["ns/op"]) }

func (s *scenario) lib(name string) *result {
	for _, r := range s.results {
		if r.lib == name && r.na == "" && r.runs() > 0 {
			return r
		}
	}
	return nil
}

// baseline returns the row the "vs" column divides by: the direct call,
// else the channel.
func (s *scenario) baseline() (*result, string) {
	if r := s.lib("direct"); r != nil {
		return r, "vs direct call"
	}
	if r := s.lib("chan"); r != nil {
		return r, "vs chan"
	}
	return nil, ""
}

// ours is the name of Busline's rows.
const ours = "busline"

type meta struct {
	Date, CPU, Go, Command string
	Notes                  string // appended to the closing section
	Rev                    string // Busline's revision
	Cores                  int
	Peers                  [][2]string
}

// coreUnits are the columns every table has; any other unit is an extra.
var coreUnits = map[string]bool{"ns/op": true, "B/op": true, "allocs/op": true}

func render(w *strings.Builder, rs *results, m meta) {
	fmt.Fprintf(w, "# Benchmark results\n\n")
	fmt.Fprintf(w, "Generated by `bash run.sh` (bench/cmd/results) on %s.\n\n", m.Date)
	fmt.Fprintf(w, "- Machine: %s, %d cores\n- Go: %s\n", m.CPU, m.Cores, m.Go)
	if m.Rev != "" {
		fmt.Fprintf(w, "- Busline: %s\n", m.Rev)
	}
	if m.Command != "" {
		fmt.Fprintf(w, "- Command: `%s`\n", m.Command)
	}
	if len(m.Peers) > 0 {
		fmt.Fprintf(w, "- Peers:")
		for i, p := range m.Peers {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(w, "%s %s %s", sep, p[0], p[1])
		}
		fmt.Fprintf(w, "\n")
	}
	fmt.Fprintf(w, "\nEach number is the median of the runs (the \"runs\" column) with, after ±, "+
		"the half-width of its %.0f%% confidence interval as a percentage of the median (with 5 runs: the "+
		"larger distance from the median to the lowest or the highest run; ±∞ with fewer than 5), computed "+
		"by golang.org/x/perf's benchmath as benchstat does. "+
		"Take them with a grain of salt: the machine is shared with other jobs, so the "+
		"numbers are noisy, and a benchmark measures one workload on one machine. "+
		"Ratios divide the scenario's headline metric (ns/op; p50 for a latency scenario, p99 for a sustained "+
		"one) by Busline's (\"vs Busline\", below 1 means better than Busline) "+
		"and by the direct call's or the channel's (the floor). "+
		"A ratio marked \"~ (not significant)\" is one where benchmath's Mann-Whitney U-test (alpha 0.05) "+
		"cannot tell the two apart: the difference is within the noise of the run (with fewer than 4 runs "+
		"each, no difference can be significant). "+
		"\"n/a\" means the library cannot do the scenario; the reason follows.\n\n", 100*confidence)

	renderHeadline(w, rs)

	for _, s := range rs.order {
		fmt.Fprintf(w, "## %s\n\n", s.name)
		base, baseName := s.baseline()
		busl := s.lib(ours)
		var extras []string
		for _, r := range s.results {
			for _, u := range r.units {
				if !coreUnits[u] && !slices.Contains(extras, u) {
					extras = append(extras, u)
				}
			}
		}
		unit := s.headlineUnit()
		head := []string{"Library", "ns/op", "allocs/op", "vs Busline"}
		if unit != "ns/op" {
			head[3] = "vs Busline (" + unit + ")"
		}
		if base != nil {
			head = append(head, baseName)
		}
		head = append(head, extras...)
		head = append(head, "runs, or why n/a")
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat(" --- |", len(head)))
		for _, r := range s.results {
			if r.na != "" || r.runs() == 0 {
				reason := r.na
				if reason == "" {
					reason = "no result"
				}
				row := []string{r.lib, "n/a", "", ""}
				if base != nil {
					row = append(row, "")
				}
				for range extras {
					row = append(row, "")
				}
				row = append(row, reason)
				fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
				continue
			}
			// Allocations hardly vary between runs: the median alone.
			allocs := ""
			if a, ok := r.median("allocs/op"); ok {
				allocs = formatNum(a)
			}
			row := []string{r.lib, r.cell("ns/op"), allocs}
			row = append(row, ratio(r, busl, unit))
			if base != nil {
				row = append(row, ratio(r, base, unit))
			}
			for _, u := range extras {
				row = append(row, r.cell(u))
			}
			row = append(row, strconv.Itoa(r.runs()))
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
		fmt.Fprintf(w, "\n")
	}
	renderLosses(w, rs)
	if m.Notes != "" {
		fmt.Fprintf(w, "\n%s", m.Notes)
	}
}

// baselines are the rows that are limits, not libraries: Busline is not
// said to lose to them.
var baselines = map[string]bool{"direct": true, "chan": true}

// renderLosses lists the scenarios where a library did better than
// Busline on the headline metric (lower ns/op, p50 or p99): first the
// differences benchmath finds significant, then those within the noise.
func renderLosses(w *strings.Builder, rs *results) {
	fmt.Fprintf(w, "## Where Busline loses\n\n")
	var sig, noise []string
	for _, s := range rs.order {
		busl := s.lib(ours)
		if busl == nil {
			continue
		}
		unit := s.headlineUnit()
		mine, ok := busl.median(unit)
		if !ok || mine == 0 {
			continue
		}
		for _, r := range s.results {
			if r.lib == ours || baselines[r.lib] || r.na != "" || strings.HasPrefix(r.lib, ours+"-") {
				continue
			}
			v, ok := r.median(unit)
			if !ok || v >= mine {
				continue
			}
			line := fmt.Sprintf("- %s: %s %s %s vs Busline's %s (%.2f×", s.name, r.lib, formatNum(v), unit, formatNum(mine), v/mine)
			if yes, c := r.significant(busl, unit); yes {
				sig = append(sig, line+", "+c.String()+")\n")
			} else {
				noise = append(noise, line+", ~ not significant: "+c.String()+")\n")
			}
		}
	}
	for _, l := range sig {
		fmt.Fprint(w, l)
	}
	if len(sig) == 0 {
		fmt.Fprintf(w, "Nowhere in this run: no library beat Busline's median by a significant difference in any scenario.\n")
	}
	if len(noise) > 0 {
		fmt.Fprintf(w, "\nAhead of Busline's median, but within the noise of the run:\n\n")
		for _, l := range noise {
			fmt.Fprint(w, l)
		}
	}
}

// renderHeadline writes one table with a row per scenario and a column per
// library: the median ns/op, "n/a", or nothing if the library was not run.
func renderHeadline(w *strings.Builder, rs *results) {
	var libs []string
	for _, s := range rs.order {
		for _, r := range s.results {
			if !slices.Contains(libs, r.lib) {
				libs = append(libs, r.lib)
			}
		}
	}
	fmt.Fprintf(w, "## Headline (median ns/op; p50 µs for latency scenarios, p99 µs for sustained rates)\n\n| Scenario | %s |\n|%s\n",
		strings.Join(libs, " | "), strings.Repeat(" --- |", len(libs)+1))
	for _, s := range rs.order {
		unit := s.headlineUnit()
		row := []string{s.name}
		if unit != "ns/op" {
			row[0] += " (" + unit + ")"
		}
		for _, l := range libs {
			cell := ""
			for _, r := range s.results {
				if r.lib != l {
					continue
				}
				if c := r.cell(unit); c != "" && r.na == "" {
					cell = c
					if l == ours {
						cell = "**" + cell + "**"
					}
				} else {
					cell = "n/a"
				}
			}
			row = append(row, cell)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintf(w, "\n")
}

// headlineUnit is the unit of the scenario's headline cells and ratios:
// p99-µs for a sustained-rate scenario (whose ns/op is its schedule),
// p50-µs for a latency scenario (whose ns/op includes idle waits), ns/op
// otherwise.
func (s *scenario) headlineUnit() string {
	for _, c := range []struct{ word, unit string }{{"Sustained", "p99-µs"}, {"Latency", "p50-µs"}} {
		if !strings.Contains(s.name, c.word) {
			continue
		}
		for _, r := range s.results {
			if _, ok := r.values[c.unit]; ok {
				return c.unit
			}
		}
	}
	return "ns/op"
}

// ratio formats r's median of unit divided by ref's, marked "~ (not
// significant)" when benchmath cannot tell the two samples apart; "" if
// either has no value. A row's ratio to itself is 1.00×, unmarked.
func ratio(r, ref *result, unit string) string {
	if ref == nil {
		return ""
	}
	v, ok1 := r.median(unit)
	d, ok2 := ref.median(unit)
	if !ok1 || !ok2 || d == 0 {
		return ""
	}
	out := fmt.Sprintf("%.2f×", v/d)
	if r == ref {
		return out
	}
	if yes, _ := r.significant(ref, unit); !yes {
		out += " ~ (not significant)"
	}
	return out
}

// formatNum prints v with three significant digits and thousands
// separators for large values.
func formatNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000:
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func group(digits string) string {
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// cpuModel reads the CPU model from /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU (" + runtime.GOOS + "/" + runtime.GOARCH + ")"
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// peers are the modules whose versions RESULTS.md names.
var peers = []string{
	"github.com/asaskevich/EventBus",
	"github.com/cskr/pubsub/v2",
	"github.com/ThreeDotsLabs/watermill",
	"github.com/nats-io/nats-server/v2",
	"github.com/gobwas/glob",
	"github.com/redis/go-redis/v9",
	"github.com/ThreeDotsLabs/watermill-redisstream",
	"github.com/centrifugal/centrifuge",
	"github.com/nats-io/nats.go",
}

// peerVersions returns the required versions of the peers in gomod, the
// text of a go.mod, in the order of peers.
func peerVersions(gomod string) [][2]string {
	found := map[string]string{}
	for line := range strings.Lines(gomod) {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && slices.Contains(peers, f[0]) {
			found[f[0]] = f[1]
		}
	}
	var out [][2]string
	for _, p := range peers {
		if v, ok := found[p]; ok {
			out = append(out, [2]string{p, v})
		}
	}
	return out
}
