package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/busline/bus/monitor"
	"github.com/busline/bus/redistest"
)

// TestMonitor checks the -monitor flag: the page and its JSON on a
// loopback address by default, showing the posted messages and the
// bridge; off with -monitor "".
func TestMonitor(t *testing.T) {
	rs := redistest.Start(t, nil)
	base := startInstance(t, "-redis", rs.URL())
	c := &http.Client{}
	post(t, c, base, "lobby", "alice", "hi")
	post(t, c, base, "lobby", "alice", "again")

	res, err := c.Get(base + defaultMonitorPath)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET %s: %s %s", defaultMonitorPath, res.Status, res.Header.Get("Content-Type"))
	}
	res, err = c.Get(base + defaultMonitorPath + "all")
	if err != nil {
		t.Fatal(err)
	}
	var all monitor.AllDoc
	err = json.NewDecoder(res.Body).Decode(&all)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if all.Stats.Bus == nil || len(all.Routes.Routes) != 1 || all.Routes.Routes[0].Pattern != "chat.*" || len(all.Connections.Connections) == 0 {
		t.Errorf("monitor: stats %+v, routes %+v, connections %+v", all.Stats, all.Routes, all.Connections)
	}
	if r := all.Routes.Routes; len(r) == 1 && r[0].Queued < 2 {
		t.Errorf("route exported %d messages, want the 2 posted", r[0].Queued)
	}

	// The page is behind the chat's Host check (DNS rebinding).
	req, err := http.NewRequest(http.MethodGet, base+defaultMonitorPath+"all", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "evil.example"
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("GET all with Host evil.example: %s, want 421", res.Status)
	}

	off := startInstance(t, "-monitor", "")
	res, err = c.Get(off + defaultMonitorPath + "stats")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("with -monitor \"\": GET stats: %s, want 404", res.Status)
	}
}
