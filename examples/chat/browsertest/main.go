// Command browsertest is the browser test of examples/chat: it drives two
// pages in headless Chromium against two chat instances that share one
// redis-server, and checks what a person would see. `go test
// ./examples/chat` runs it (TestBrowser) when chromium is on PATH; by hand,
// from the repository root:
//
//	go run ./examples/chat/browsertest -screenshots /tmp/chat
//
// It needs chromium (Debian package chromium), redis-server, redis-cli and
// go on PATH, and touches nothing but 127.0.0.1 and a temporary directory.
// It builds the chat, starts a redis-server and two instances (A and B) on
// free loopback ports, and starts Chromium headless with
// --remote-debugging-pipe, so the DevTools protocol runs over two pipes: no
// port, no WebSocket library. Then:
//
//  1. page A follows rooms lobby and dev as alice, page B the same as bob;
//     both say the rooms are shared through Redis and show the empty state
//     "No messages yet in #lobby, #dev";
//  2. alice types and sends 10 messages in A's form, alternating rooms; B's
//     page must show them, each room in order, marked "via A"; bob answers
//     in B's form, and A's page must show it "via B";
//  3. redis-server is killed for about 5 seconds: both pages must say Redis
//     is unreachable; alice posts a message meanwhile, which A shows at once;
//  4. redis-server is started again on the same port: page A must say
//     that Redis is back and the message posted meanwhile is being sent;
//  5. both pages must say Redis is back and "You may have missed
//     messages", and B must show alice's message, held by A's bridge
//     during the outage;
//  6. bob follows "lobby, bad.room": B's page must show the server's
//     answer (bad room name "bad.room": ...), not "reconnecting…", and
//     sending is disabled;
//  7. bob follows "quiet": B's page must show "No messages yet in #quiet";
//  8. redis-server is killed again and bob follows "later", a room B has
//     no stream of: B cannot subscribe to it on Redis and refuses the
//     stream (503, Retry-After), and the page must say it cannot follow
//     the room, that Redis is unreachable, and try again;
//  9. redis-server is started again: B's page must follow "later".
//
// With -screenshots, a PNG of the page checked is written to that directory
// at each step (1-empty.png, 2-messages.png, 3-down.png of page B,
// 4-resuming.png of page A, 5-back.png, 6-bad-room.png, 7-empty-room.png,
// 8-new-room-down.png, 9-new-room-back.png of page B). It prints what it checks, and at the
// first failure prints "FAIL: ..." and exits with status 1. Every wait is
// bounded; every process it started is stopped on the way out.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Time limits of the waits of the test.
const (
	timeout = 15 * time.Second // things that take milliseconds
	// recovery bounds the time the instances take to see Redis back: the
	// bridge retries with a backoff of up to 5 s and holds exports for
	// its ResumeDelay (6 s) after Redis answers again.
	recovery = 45 * time.Second
	outage   = 5 * time.Second // how long redis-server is away
)

func main() {
	screenshots := flag.String("screenshots", "", "write a PNG of the page at each step to this `directory` (default: none)")
	chromium := flag.String("chromium", "chromium", "the Chromium `binary`")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "browsertest: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	if err := run(*chromium, *screenshots); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("PASS")
}

// cleanups are the stops of what run started, run last first.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for _, f := range slices.Backward(*c) {
		f()
	}
}

func run(chromium, screenshots string) error {
	var stop cleanups
	defer stop.run()
	dir, err := os.MkdirTemp("", "chat-browsertest")
	if err != nil {
		return err
	}
	stop.add(func() {
		// Best effort: a leftover temporary directory harms nothing.
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "browsertest:", err)
		}
	})
	if screenshots != "" {
		if err := os.MkdirAll(screenshots, 0o755); err != nil {
			return err
		}
	}
	shot := func(p *page, name string) error {
		if screenshots == "" {
			return nil
		}
		file := filepath.Join(screenshots, name)
		if err := p.screenshot(file); err != nil {
			return err
		}
		fmt.Println("  screenshot:", file)
		return nil
	}

	chat := filepath.Join(dir, "chat")
	if out, err := exec.Command("go", "build", "-o", chat, "github.com/busline/bus/examples/chat").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}

	rs, err := startRedis(dir)
	if err != nil {
		return err
	}
	stop.add(rs.stop)
	fmt.Println("redis-server at", rs.url())

	a, stopA, err := startChat(chat, "-redis", rs.url(), "-name", "A")
	if err != nil {
		return err
	}
	stop.add(stopA)
	b, stopB, err := startChat(chat, "-redis", rs.url(), "-name", "B")
	if err != nil {
		return err
	}
	stop.add(stopB)
	fmt.Println("instance A at", a, "and B at", b)

	br, err := startBrowser(chromium, dir)
	if err != nil {
		return err
	}
	stop.add(br.close)

	pageA, err := br.open(a + "/?rooms=lobby,dev&name=alice")
	if err != nil {
		return err
	}
	pageB, err := br.open(b + "/?rooms=lobby,dev&name=bob")
	if err != nil {
		return err
	}
	pages := []*page{pageA, pageB}

	// 1. Connected, and the empty state.
	for _, p := range pages {
		if err := p.waitFor(`document.body.dataset.ready === "true" && document.body.dataset.link === "connected"`,
			"connected, the rooms shared through Redis", timeout); err != nil {
			return err
		}
		if err := p.waitText("empty", "No messages yet in #lobby, #dev."); err != nil {
			return err
		}
	}
	fmt.Println("1. both pages follow lobby and dev, shared through Redis, and say \"No messages yet in #lobby, #dev\"")
	if err := shot(pageB, "1-empty.png"); err != nil {
		return err
	}

	// 2. Messages both ways.
	var want []string
	for i := range 10 {
		room := []string{"lobby", "dev"}[i%2]
		text := fmt.Sprintf("hello %d from alice", i)
		if err := pageA.send(room, text); err != nil {
			return err
		}
		want = append(want, room+"|alice|"+text+"|A")
	}
	got, err := pageB.waitMessages(len(want))
	if err != nil {
		return err
	}
	if err := sameOrderPerRoom(got, want); err != nil {
		return fmt.Errorf("page B: %w", err)
	}
	if err := pageB.waitFor(`document.getElementById("empty").hidden`, "the empty state hidden", timeout); err != nil {
		return err
	}
	if err := pageB.send("lobby", "hi alice, bob here"); err != nil {
		return err
	}
	gotA, err := pageA.waitMessages(len(want) + 1)
	if err != nil {
		return err
	}
	if last := gotA[len(gotA)-1]; last != "lobby|bob|hi alice, bob here|B" {
		return fmt.Errorf("page A's last message is %q, want bob's answer via B", last)
	}
	fmt.Println("2. page B shows alice's 10 messages, each room in order, via A; page A shows bob's answer via B")
	if err := shot(pageB, "2-messages.png"); err != nil {
		return err
	}

	// 3. Redis goes away.
	down := time.Now()
	if err := rs.kill(); err != nil {
		return err
	}
	for _, p := range pages {
		if err := p.waitFor(`document.body.dataset.link === "down" && !document.getElementById("banner").hidden &&
			document.getElementById("banner").textContent.includes("Redis unreachable since")`,
			"the outage: Redis unreachable", timeout); err != nil {
			return err
		}
	}
	const held = "sent while Redis was away"
	if err := pageA.send("lobby", held); err != nil {
		return err
	}
	if _, err := pageA.waitMessages(len(want) + 2); err != nil {
		return err
	}
	fmt.Printf("3. redis-server killed: both pages say \"Redis unreachable\" after %v; alice posted %q, shown on A\n",
		time.Since(down).Round(100*time.Millisecond), held)
	if err := shot(pageB, "3-down.png"); err != nil {
		return err
	}

	// 4 and 5. Redis comes back.
	time.Sleep(time.Until(down.Add(outage)))
	if err := rs.restart(); err != nil {
		return err
	}
	back := time.Now()
	// A's bridge subscribes again before it sends what it held: the
	// bridge waits ReconnectMax + 1 s (its ResumeDelay) for that.
	if err := pageA.waitFor(`document.body.dataset.link === "resuming" && document.getElementById("banner").className === "resuming"`,
		"Redis back, held messages being sent", recovery); err != nil {
		return err
	}
	fmt.Println("4. redis-server back on the same port: page A says Redis is back and it is sending the held message")
	if err := shot(pageA, "4-resuming.png"); err != nil {
		return err
	}
	for _, p := range pages {
		if err := p.waitFor(`document.body.dataset.link === "connected" &&
			[...document.querySelectorAll("#messages li.note")].some((li) => li.textContent.includes("You may have missed messages"))`,
			`Redis back and a note "You may have missed messages"`, recovery); err != nil {
			return err
		}
	}
	gotB, err := pageB.waitMessagesFor(len(want)+2, recovery)
	if err != nil {
		return err
	}
	if last := gotB[len(gotB)-1]; last != "lobby|alice|"+held+"|A" {
		return fmt.Errorf("page B's last message is %q, want alice's message held during the outage", last)
	}
	fmt.Printf("5. both pages say Redis is back and \"You may have missed messages\"; "+
		"B shows the held message %v after the restart\n", time.Since(back).Round(100*time.Millisecond))
	if err := shot(pageB, "5-back.png"); err != nil {
		return err
	}

	// 6. A bad room name: the server's answer is shown.
	if err := pageB.follow("lobby, bad.room"); err != nil {
		return err
	}
	const refusal = `bad room name "bad.room": want 1 to 32 of a-z 0-9 _ -, starting with a letter or digit`
	if err := pageB.waitFor(fmt.Sprintf(`document.body.dataset.error === %q && document.getElementById("status").textContent === "cannot follow: " + %[1]q &&
		document.getElementById("empty").textContent.includes(%[1]q) && document.getElementById("send").disabled`, refusal), "the server's refusal of bad.room", timeout); err != nil {
		return err
	}
	fmt.Printf("6. rooms \"lobby, bad.room\": page B shows the server's answer %q and cannot send\n", refusal)
	if err := shot(pageB, "6-bad-room.png"); err != nil {
		return err
	}

	// 7. An empty room.
	if err := pageB.follow("quiet"); err != nil {
		return err
	}
	if err := pageB.waitFor(`document.body.dataset.ready === "true" && document.body.dataset.error === undefined`,
		"following quiet", timeout); err != nil {
		return err
	}
	if err := pageB.waitText("empty", "No messages yet in #quiet."); err != nil {
		return err
	}
	fmt.Println(`7. room "quiet": page B says "No messages yet in #quiet"`)
	if err := shot(pageB, "7-empty-room.png"); err != nil {
		return err
	}

	// 8. A room new on B while Redis is down: B cannot subscribe to it,
	// refuses the stream (503, Retry-After), and the page tries again
	// until Redis is back.
	if err := rs.kill(); err != nil {
		return err
	}
	if err := pageB.follow("later"); err != nil {
		return err
	}
	// EventSource's request, then explain's, each refused after the
	// instance's 5 s wait for Redis.
	if err := pageB.waitFor(`(() => { const s = document.getElementById("status").textContent;
		return s.startsWith('cannot follow: not subscribed on Redis: room "later"') && s.endsWith("(trying again in 5 s)") &&
			document.body.dataset.link === "down"; })()`,
		"the refusal of a new room while Redis is down, tried again", 3*timeout); err != nil {
		return err
	}
	fmt.Println(`8. room "later" while redis-server is down: page B says it cannot follow it, that Redis is unreachable, and tries again`)
	if err := shot(pageB, "8-new-room-down.png"); err != nil {
		return err
	}
	if err := rs.restart(); err != nil {
		return err
	}
	back = time.Now()
	if err := pageB.waitFor(`document.body.dataset.ready === "true" && document.body.dataset.error === undefined &&
		document.getElementById("status").textContent === "following #later"`, "following later once Redis is back", recovery); err != nil {
		return err
	}
	fmt.Printf("9. redis-server back: page B follows \"later\" %v after the restart\n", time.Since(back).Round(100*time.Millisecond))
	return shot(pageB, "9-new-room-back.png")
}

// sameOrderPerRoom checks that got holds the messages of want, in the same
// order within each room (rooms are topics: their relative order across
// topics is not guaranteed).
func sameOrderPerRoom(got, want []string) error {
	byRoom := func(list []string) map[string][]string {
		m := map[string][]string{}
		for _, s := range list {
			room, _, _ := strings.Cut(s, "|")
			m[room] = append(m[room], s)
		}
		return m
	}
	g, w := byRoom(got), byRoom(want)
	for room := range w {
		if !slices.Equal(g[room], w[room]) {
			return fmt.Errorf("room %s shows %q, want %q", room, g[room], w[room])
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d messages, want %d", len(got), len(want))
	}
	return nil
}

// waitExit waits for cmd to exit, killing it if it has not after grace.
func waitExit(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		// The exit status of a process being stopped tells nothing.
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		if err := cmd.Process.Kill(); err != nil {
			fmt.Fprintf(os.Stderr, "browsertest: killing %s: %v\n", cmd.Path, err)
		}
		<-done
	}
}

// redisServer is a redis-server on a loopback port, without persistence,
// that can be killed and started again on the same port.
type redisServer struct {
	dir  string
	port int
	cmd  *exec.Cmd // nil while killed
}

// startRedis starts a redis-server on a free loopback port.
func startRedis(dir string) (*redisServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return nil, err
	}
	rs := &redisServer{dir: dir, port: port}
	return rs, rs.start()
}

func (rs *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d", rs.port) }

// start starts the server and waits until it answers PING.
func (rs *redisServer) start() error {
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(rs.port),
		"--save", "", "--appendonly", "no", "--dir", rs.dir)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		// An early exit (port taken) shows as no answer to PING.
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(rs.port), "PING").Output()
		if err == nil && strings.TrimSpace(string(out)) == "PONG" {
			rs.cmd = cmd
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited at start", rs.port)
		default:
		}
		if time.Now().After(deadline) {
			if err := cmd.Process.Kill(); err != nil {
				return fmt.Errorf("redis-server did not answer PING; killing it: %w", err)
			}
			<-exited
			return fmt.Errorf("redis-server did not answer PING in %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the server with SIGKILL, as in a crash, and waits for its end.
func (rs *redisServer) kill() error {
	if rs.cmd == nil {
		return nil
	}
	cmd := rs.cmd
	rs.cmd = nil
	if err := cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing redis-server: %w", err)
	}
	// Reaped by the goroutine of start: wait for the port to be free.
	deadline := time.Now().Add(timeout)
	for {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", rs.port))
		if err == nil {
			return l.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d still busy %v after killing redis-server", rs.port, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restart starts the server again on its port, retrying for a while if the
// port is busy.
func (rs *redisServer) restart() error {
	deadline := time.Now().Add(timeout)
	for {
		err := rs.start()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop is kill for the cleanups: its error is printed.
func (rs *redisServer) stop() {
	if err := rs.kill(); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
	}
}

// startChat starts an instance of the chat on a free port and returns its
// base URL, read from the line it prints. stop interrupts it as Ctrl-C
// does, and kills it if it has not exited 10 s later.
func startChat(bin string, args ...string) (base string, stop func(), err error) {
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = os.Stderr // the instance's log: the bridge's reports
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			fmt.Fprintf(os.Stderr, "browsertest: interrupting chat %v: %v\n", args, err)
		}
		waitExit(cmd, 10*time.Second)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("chat %v: %w", args, err)
	}
	go func() {
		// Nothing more is expected on stdout; a read error ends the copy.
		_, _ = io.Copy(io.Discard, out)
	}()
	base = regexp.MustCompile(`http://[0-9.:]+`).FindString(line)
	if base == "" {
		stop()
		return "", nil, fmt.Errorf("chat %v printed %q", args, line)
	}
	return base, stop, nil
}

// browser is a headless Chromium driven through the DevTools protocol over
// --remote-debugging-pipe: JSON messages ending in a NUL byte, written to
// its fd 3 and read from its fd 4.
type browser struct {
	cmd *exec.Cmd
	in  *os.File // Chromium's fd 3

	mu      sync.Mutex // protects nextID and waiting
	nextID  int
	waiting map[int]chan response
}

// response is the answer to one protocol call.
type response struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func startBrowser(bin, dir string) (*browser, error) {
	toR, toW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		return nil, errors.Join(err, toR.Close(), toW.Close())
	}
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--no-first-run",
		"--window-size=1000,700", "--remote-debugging-pipe", "--user-data-dir="+filepath.Join(dir, "profile"),
		"about:blank")
	cmd.ExtraFiles = []*os.File{toR, fromW} // fds 3 and 4
	err = cmd.Start()
	// Chromium has its own copies of its ends of the pipes now.
	if cerr := errors.Join(toR.Close(), fromW.Close()); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("starting %s: %w (Debian: apt-get install chromium)", bin, err), toW.Close(), fromR.Close())
	}
	br := &browser{cmd: cmd, in: toW, waiting: map[int]chan response{}}
	go br.read(fromR)
	return br, nil
}

// read dispatches the answers of calls; it ignores events. It returns
// when Chromium closes its end of the pipe.
func (br *browser) read(r *os.File) {
	defer func() {
		// The pipe is done with either way.
		_ = r.Close()
	}()
	rd := bufio.NewReader(r)
	for {
		msg, err := rd.ReadBytes(0)
		if err != nil {
			return
		}
		var m struct {
			ID int `json:"id"`
			response
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue
		}
		br.mu.Lock()
		ch := br.waiting[m.ID]
		delete(br.waiting, m.ID)
		br.mu.Unlock()
		if ch != nil {
			ch <- m.response
		}
	}
}

// call sends one command (to the page of sessionID, or to the browser when
// it is empty) and decodes its result into out.
func (br *browser) call(sessionID, method string, params, out any) error {
	br.mu.Lock()
	br.nextID++
	id := br.nextID
	ch := make(chan response, 1)
	br.waiting[id] = ch
	br.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if sessionID != "" {
		msg["sessionId"] = sessionID
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := br.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s: no answer in %v", method, timeout)
	}
}

// close asks Chromium to close and kills it if it has not within 5 s.
func (br *browser) close() {
	if err := br.call("", "Browser.close", map[string]any{}, nil); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest: closing Chromium:", err)
	}
	if err := br.in.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
	}
	waitExit(br.cmd, 5*time.Second)
}

// page is a tab of the browser.
type page struct {
	br        *browser
	url       string
	sessionID string
}

// open opens url in a new tab.
func (br *browser) open(url string) (*page, error) {
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := br.call("", "Target.createTarget", map[string]any{"url": url}, &target); err != nil {
		return nil, err
	}
	var session struct {
		SessionID string `json:"sessionId"`
	}
	if err := br.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &session); err != nil {
		return nil, err
	}
	return &page{br: br, url: url, sessionID: session.SessionID}, nil
}

// eval evaluates a JavaScript expression in the page, awaiting it if it is
// a promise, and decodes its value into out.
func (p *page) eval(expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := p.br.call(p.sessionID, "Runtime.evaluate", map[string]any{
		"expression": expr, "awaitPromise": true, "returnByValue": true,
	}, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("%s: %s", expr, r.ExceptionDetails.Text)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// shows describes what the page shows, for failure messages.
const shows = `JSON.stringify({
	data: {...document.body.dataset},
	status: document.getElementById("status").textContent,
	header: document.getElementById("link").textContent,
	banner: document.getElementById("banner").hidden ? "(hidden)" : document.getElementById("banner").textContent,
	list: [...document.querySelectorAll("#messages li:not([hidden])")].slice(-4).map((li) => li.textContent),
})`

// waitFor waits until a JavaScript condition is true in the page, at most
// d; what says what the condition means, for the failure message, which
// also says what the page shows.
func (p *page) waitFor(cond, what string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var ok bool
		err := p.eval("!!("+cond+")", &ok)
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			var state string
			if serr := p.eval(shows, &state); serr != nil {
				state = serr.Error()
			}
			if err != nil {
				state += "; " + err.Error()
			}
			return fmt.Errorf("page %s: waited %v for %s; it shows %s", p.url, d, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitText waits until the element id is visible with the text want.
func (p *page) waitText(id, want string) error {
	cond := fmt.Sprintf(`(() => { const e = document.getElementById(%q); return !e.hidden && e.textContent.startsWith(%q); })()`, id, want)
	return p.waitFor(cond, fmt.Sprintf("#%s saying %q", id, want), timeout)
}

// follow types rooms into the page's rooms field and clicks Follow.
func (p *page) follow(rooms string) error {
	if err := p.br.call(p.sessionID, "Page.bringToFront", map[string]any{}, nil); err != nil {
		return err
	}
	r, err := json.Marshal(rooms)
	if err != nil {
		return err
	}
	return p.eval(fmt.Sprintf(`document.getElementById("rooms").value = %s; document.getElementById("follow").click()`, r), nil)
}

// send types text into the page's form for room and clicks Send, then waits
// until the page has cleared the input: the server accepted the message.
func (p *page) send(room, text string) error {
	// Chromium slows the timers of background tabs down to one a second.
	if err := p.br.call(p.sessionID, "Page.bringToFront", map[string]any{}, nil); err != nil {
		return err
	}
	r, err := json.Marshal(room)
	if err != nil {
		return err
	}
	t, err := json.Marshal(text)
	if err != nil {
		return err
	}
	expr := fmt.Sprintf(`(async () => {
		const text = document.getElementById("text");
		document.getElementById("room").value = %s;
		text.value = %s;
		document.getElementById("send").click();
		for (let i = 0; i < 500 && text.value !== ""; i++) await new Promise((r) => setTimeout(r, 10));
		return text.value === "";
	})()`, r, t)
	var sent bool
	if err := p.eval(expr, &sent); err != nil {
		return err
	}
	if !sent {
		var state string
		if err := p.eval(shows, &state); err != nil {
			state = err.Error()
		}
		return fmt.Errorf("page %s: %q was not accepted; the page shows %s", p.url, text, state)
	}
	return nil
}

// waitMessages waits until the page shows n messages and returns them as
// "room|from|text|instance".
func (p *page) waitMessages(n int) ([]string, error) {
	return p.waitMessagesFor(n, timeout)
}

// waitMessagesFor is waitMessages, waiting at most d.
func (p *page) waitMessagesFor(n int, d time.Duration) ([]string, error) {
	const list = `[...document.querySelectorAll("#messages li.msg")].map((li) =>
		[li.dataset.room, li.querySelector(".from").textContent, li.querySelector(".text").textContent,
		 li.querySelector(".meta").textContent.replace(/.* via /, "")].join("|"))`
	deadline := time.Now().Add(d)
	for {
		var got []string
		if err := p.eval(list, &got); err != nil {
			return nil, err
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				return got, fmt.Errorf("page %s: %d messages shown after %v, want %d: %q", p.url, len(got), d, n, got)
			}
			return got, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot writes a PNG of the page to file.
func (p *page) screenshot(file string) error {
	if err := p.br.call(p.sessionID, "Page.bringToFront", map[string]any{}, nil); err != nil {
		return err
	}
	var r struct {
		Data string `json:"data"`
	}
	if err := p.br.call(p.sessionID, "Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return err
	}
	return os.WriteFile(file, png, 0o644)
}
