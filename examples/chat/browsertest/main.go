// Command browsertest is the browser test of examples/chat: it drives two
// pages in headless Chromium against two chat instances that share one
// redis-server, and checks that messages typed on one page appear on the
// other, in order. It is not part of `go test` (it needs Chromium); run it by
// hand from the repository root:
//
//	go run ./examples/chat/browsertest -screenshot /tmp/chat.png
//
// It needs chromium (Debian package chromium), redis-server and go on PATH,
// and touches nothing but 127.0.0.1. It builds the chat, starts a
// redis-server and two instances (A and B) on free loopback ports, and starts
// Chromium headless with --remote-debugging-pipe, so the DevTools protocol
// runs over two pipes: no port, no WebSocket library. Then:
//
//  1. page A follows rooms lobby and dev as alice, page B the same as bob;
//  2. alice types and sends 10 messages in A's form, alternating rooms;
//  3. B's page must show them, each room in order, marked "via A";
//  4. bob answers in B's form, and A's page must show it "via B";
//  5. a screenshot of B's page is written to -screenshot.
//
// It prints what it checks and exits 1 at the first failure, stopping every
// process it started.
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

// timeout bounds each wait of the test.
const timeout = 15 * time.Second

func main() {
	screenshot := flag.String("screenshot", "", "write a PNG of page B to this `file` (default: none)")
	chromium := flag.String("chromium", "chromium", "the Chromium `binary`")
	flag.Parse()
	if err := run(*chromium, *screenshot); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("PASS")
}

func run(chromium, screenshot string) error {
	dir, err := os.MkdirTemp("", "chat-browsertest")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	chat := filepath.Join(dir, "chat")
	if out, err := exec.Command("go", "build", "-o", chat, "github.com/busline/bus/examples/chat").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}

	redisURL, stopRedis, err := startRedis(dir)
	if err != nil {
		return err
	}
	defer stopRedis()
	fmt.Println("redis-server at", redisURL)

	a, stopA, err := startChat(chat, "-redis", redisURL, "-name", "A")
	if err != nil {
		return err
	}
	defer stopA()
	b, stopB, err := startChat(chat, "-redis", redisURL, "-name", "B")
	if err != nil {
		return err
	}
	defer stopB()
	fmt.Println("instance A at", a, "and B at", b)

	br, err := startBrowser(chromium, dir)
	if err != nil {
		return err
	}
	defer br.close()

	pageA, err := br.open(a + "/?rooms=lobby,dev&name=alice")
	if err != nil {
		return err
	}
	pageB, err := br.open(b + "/?rooms=lobby,dev&name=bob")
	if err != nil {
		return err
	}
	for _, p := range []*page{pageA, pageB} {
		if err := p.waitFor(`document.body.dataset.ready === "true"`); err != nil {
			return fmt.Errorf("page %s never connected its EventSource: %w", p.url, err)
		}
	}
	fmt.Println("both pages follow lobby and dev")

	var want []string
	for i := range 10 {
		room := []string{"lobby", "dev"}[i%2]
		text := fmt.Sprintf("hello %d from alice", i)
		if err := pageA.send(room, text); err != nil {
			return err
		}
		want = append(want, room+"|alice|"+text+"|A")
	}
	fmt.Println("alice sent 10 messages on A")

	got, err := pageB.waitMessages(len(want))
	if err != nil {
		return fmt.Errorf("page B: %w", err)
	}
	if err := sameOrderPerRoom(got, want); err != nil {
		return fmt.Errorf("page B: %w", err)
	}
	fmt.Println("page B shows the 10 messages, each room in order, via A")

	if err := pageB.send("lobby", "hi alice, bob here"); err != nil {
		return err
	}
	gotA, err := pageA.waitMessages(len(want) + 1)
	if err != nil {
		return fmt.Errorf("page A: %w", err)
	}
	if last := gotA[len(gotA)-1]; last != "lobby|bob|hi alice, bob here|B" {
		return fmt.Errorf("page A's last message is %q, want bob's answer via B", last)
	}
	fmt.Println("page A shows bob's answer via B")

	if screenshot != "" {
		if err := pageB.screenshot(screenshot); err != nil {
			return err
		}
		fmt.Println("screenshot of page B:", screenshot)
	}
	return nil
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

// freePort returns a free 127.0.0.1 port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts a redis-server on a free loopback port, without
// persistence, and waits until it answers.
func startRedis(dir string) (url string, stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("redis-server: %w", err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(port), "PING").Output()
		if err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return fmt.Sprintf("redis://127.0.0.1:%d", port), stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("redis-server did not answer PING")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startChat starts an instance of the chat on a free port and returns its
// base URL, read from the line it prints.
func startChat(bin string, args ...string) (base string, stop func(), err error) {
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("chat %v: %w", args, err)
	}
	go io.Copy(io.Discard, out)
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
		return nil, err
	}
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--no-first-run",
		"--window-size=1000,700", "--remote-debugging-pipe", "--user-data-dir="+filepath.Join(dir, "profile"),
		"about:blank")
	cmd.ExtraFiles = []*os.File{toR, fromW} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w (Debian: apt-get install chromium)", bin, err)
	}
	toR.Close()
	fromW.Close()
	br := &browser{cmd: cmd, in: toW, waiting: map[int]chan response{}}
	go br.read(fromR)
	return br, nil
}

// read dispatches the answers of calls; it ignores events.
func (br *browser) read(r io.ReadCloser) {
	defer r.Close()
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
		return fmt.Errorf("%s: no answer", method)
	}
}

func (br *browser) close() {
	br.call("", "Browser.close", map[string]any{}, nil)
	br.in.Close()
	done := make(chan struct{})
	go func() { br.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		br.cmd.Process.Kill()
		<-done
	}
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

// waitFor waits until a JavaScript condition is true in the page.
func (p *page) waitFor(cond string) error {
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		if err := p.eval("!!("+cond+")", &ok); err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still false after %v", cond, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// send types text into the page's form for room and clicks Send, then waits
// until the page has cleared the input: the server accepted the message.
func (p *page) send(room, text string) error {
	// Chromium slows the timers of background tabs down to one a second.
	if err := p.br.call(p.sessionID, "Page.bringToFront", map[string]any{}, nil); err != nil {
		return err
	}
	r, _ := json.Marshal(room)
	t, _ := json.Marshal(text)
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
		return fmt.Errorf("page %s: %q was not accepted (status: see the page)", p.url, text)
	}
	return nil
}

// waitMessages waits until the page shows n messages and returns them as
// "room|from|text|instance".
func (p *page) waitMessages(n int) ([]string, error) {
	const list = `[...document.querySelectorAll("#messages li.msg")].map((li) =>
		[li.dataset.room, li.querySelector(".from").textContent, li.querySelector(".text").textContent,
		 li.querySelector(".meta").textContent.replace(/.* via /, "")].join("|"))`
	deadline := time.Now().Add(timeout)
	for {
		var got []string
		if err := p.eval(list, &got); err != nil {
			return nil, err
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				return got, fmt.Errorf("%d messages shown, want %d: %q", len(got), n, got)
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
