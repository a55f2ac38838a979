package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/monitor"
)

// defaultMonitorPath is where the monitoring page is mounted by default,
// on a loopback address only.
const defaultMonitorPath = "/debug/busline/"

// chatMonitor is the -monitor flag and, once set up, the monitoring page
// of the instance's bus and bridge (package monitor). With the flag off,
// every method does nothing but pass things through.
type chatMonitor struct {
	path string // the flag: "auto", "" (off) or a path such as "/debug/busline/"
	m    *monitor.Monitor
}

// addMonitorFlag defines -monitor on fs.
func addMonitorFlag(fs *flag.FlagSet) *chatMonitor {
	c := &chatMonitor{m: monitor.New(nil)}
	fs.StringVar(&c.path, "monitor", "auto", "`path` of the monitoring page (JSON and a live page of the bus and bridge); "+
		`"auto": `+defaultMonitorPath+` when -addr is a loopback address, off otherwise; "": off`)
	return c
}

// onError wraps a bus's or bridge's OnError so that the page lists the
// errors too.
func (c *chatMonitor) onError(next func(error)) func(error) { return c.m.OnError(next) }

// addBridge shows br on the page.
func (c *chatMonitor) addBridge(br *bridge.Bridge) { c.m.AddBridge(br) }

// handler returns srv with the monitoring page of b mounted beside it,
// behind srv's Host check, as the flag says for an instance listening on
// addr; an error for a bad path.
func (c *chatMonitor) handler(srv *Server, b *bus.Bus, addr net.Addr) (http.Handler, error) {
	p := c.path
	if p == "auto" {
		p = ""
		if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
			p = defaultMonitorPath
		}
	}
	if p == "" {
		return srv, nil
	}
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || p == "/" {
		return nil, fmt.Errorf("%w: -monitor %q: want a path such as %s", errUsage, p, defaultMonitorPath)
	}
	c.m.SetBus(b)
	mux := http.NewServeMux()
	mux.Handle(p, srv.guard(c.m))
	mux.Handle("/", srv)
	return mux, nil
}
