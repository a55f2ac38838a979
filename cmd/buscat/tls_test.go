package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
)

// TestNoSecretPrinted checks that no password of a URL reaches stdout or
// stderr, whatever is wrong with the URL, from -url or REDIS_URL.
func TestNoSecretPrinted(t *testing.T) {
	srv := redistest.Start(t, &redistest.Options{ACL: []string{"user alice on >" + progtest.Secret + " ~* &* +@all"}})
	progtest.NoSecret(t, srv.Addr(), func(url string) *exec.Cmd {
		cmd := exec.Command(built(t), "stats")
		cmd.Env = env(url)
		return cmd
	})
	progtest.NoSecret(t, srv.Addr(), func(url string) *exec.Cmd {
		cmd := exec.Command(built(t), "-url", url, "pub", "t", "x")
		cmd.Env = env("")
		return cmd
	})
	// The user with its password right works, and says nothing of it.
	r := mustBuscat(t, "redis://alice:"+progtest.Secret+"@"+srv.Addr(), "", "pub", "t", "x")
	if r.stdout != "(integer) 0\n" || r.stderr != "" {
		t.Errorf("pub: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

// TestTLSFlags runs buscat against a TLS server that requires client
// certificates: -cacert, -cert and -key make it work; without them the
// server or buscat refuses, and bad flags are usage errors.
func TestTLSFlags(t *testing.T) {
	srv := redistest.Start(t, &redistest.Options{TLS: true, RequireClientCert: true})
	ca, cert, key := srv.CertFiles()
	url := srv.URL() // rediss://127.0.0.1:PORT
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsArgs := []string{"-cacert", ca, "-cert", cert, "-key", key}

	sub := startSub(t, url, append(tlsArgs, "x")...)
	if r := mustBuscat(t, url, "", append(tlsArgs, "pub", "x", "over TLS")...); r.stdout != "(integer) 1\n" || r.stderr != "" {
		t.Errorf("pub: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if l := sub.event(t); payloadString(t, l) != "over TLS" {
		t.Errorf("sub printed %+v", l)
	}
	stopSub(t, sub)
	if r := mustBuscat(t, url, "", append(tlsArgs, "stats")...); r.stderr != "" {
		t.Errorf("stats: stderr %q", r.stderr)
	}

	for _, tc := range []struct {
		name string
		url  string
		args []string
		code int
		want string // in stderr
	}{
		{"no -cacert", url, []string{"-cert", cert, "-key", key, "stats"}, exitRuntime, "certificate signed by unknown authority"},
		{"no client certificate", url, []string{"-cacert", ca, "stats"}, exitRuntime, "cannot reach Redis at 127.0.0.1:"},
		{"-cert without -key", url, []string{"-cacert", ca, "-cert", cert, "stats"}, exitUsage, "-cert and -key go together"},
		{"-key without -cert", url, []string{"-cacert", ca, "-key", key, "stats"}, exitUsage, "-cert and -key go together"},
		{"-cert and -key swapped", url, []string{"-cacert", ca, "-cert", key, "-key", cert, "stats"}, exitUsage, "-cert, -key: tls:"},
		{"missing -cacert", url, []string{"-cacert", ca + ".missing", "stats"}, exitUsage, "-cacert: open "},
		{"-cacert not PEM", url, []string{"-cacert", notPEM, "stats"}, exitUsage, "no PEM certificate"},
		{"TLS flags without TLS", "redis://" + srv.Addr(), append(tlsArgs, "stats"), exitUsage, "need a rediss:// URL"},
		{"-insecure without TLS", "redis://" + srv.Addr(), []string{"-insecure", "stats"}, exitUsage, "need a rediss:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := buscat(t, tc.url, "", tc.args...)
			if r.code != tc.code || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit status %d, stderr %q; want %d and one line saying %q", r.code, r.stderr, tc.code, tc.want)
			}
		})
	}
}

// TestInsecure checks that skip_verify=true in the URL is refused without
// -insecure, and that -insecure, with or without it, connects without
// verifying the certificate and warns on stderr.
func TestInsecure(t *testing.T) {
	srv := redistest.Start(t, &redistest.Options{TLS: true})
	url := srv.URL()
	r := buscat(t, url+"?skip_verify=true", "", "stats")
	if r.code != exitUsage || !strings.Contains(r.stderr, "skip_verify=true turns off the verification") || !strings.Contains(r.stderr, "-insecure") {
		t.Errorf("skip_verify=true without -insecure: exit status %d, stderr %q; want 2, a refusal naming -insecure", r.code, r.stderr)
	}
	if r := buscat(t, url, "", "stats"); r.code != exitRuntime || !strings.Contains(r.stderr, "certificate signed by unknown authority") {
		t.Errorf("no CA: exit status %d, stderr %q; want 1, unknown authority", r.code, r.stderr)
	}
	for _, u := range []string{url + "?skip_verify=true", url} {
		r := buscat(t, u, "", "-insecure", "pub", "t", "x")
		if r.code != exitOK || r.stdout != "(integer) 0\n" || !strings.HasPrefix(r.stderr, "buscat: warning: -insecure: the server's TLS certificate is not verified") {
			t.Errorf("-insecure with %s: exit status %d, stdout %q, stderr %q; want 0 and a warning", u, r.code, r.stdout, r.stderr)
		}
	}
}
