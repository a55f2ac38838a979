package progtest

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// Secret is the password of the URLs of [NoSecret]: output holding it
// leaks it.
const Secret = "secret"

// secretURLs returns Redis URLs with the password Secret, each wrong in
// its own way, for a Redis server at addr: the ways a user gets a URL
// wrong, and those where the password lands outside the user information
// (an unencoded "/", "?" or "#" in it).
func secretURLs(t testing.TB, addr string) []string {
	return []string{
		"redis://alice:" + Secret + "@host:badport",
		"redis://alice:" + Secret + "@" + addr + "/x",
		"redis://alice:sec/ret" + Secret + "@" + addr,
		"redis://alice:123/" + Secret + "@" + addr,
		"redis://alice:12?" + Secret + "@" + addr,
		"redis://alice:12#" + Secret + "@" + addr,
		"redis://" + addr + "?password=" + Secret,
		"http://alice:" + Secret + "@" + addr,
		"alice:" + Secret + "@" + addr,
		"rediss://alice:" + Secret + "@" + addr + "?skip_verify=true",
		"redis://alice:" + Secret + "x@" + addr, // a wrong password: WRONGPASS
		"redis://alice:" + Secret + "@" + RefusedAddr(t),
	}
}

// NoSecret runs the command that cmd returns for each of a list of Redis
// URLs holding the password Secret, all of them wrong (badly written, with
// a wrong password, unreachable), for a Redis server at addr. It fails t
// when a command exits 0 or writes Secret on stdout or stderr. cmd must
// return a command that ends by itself, with its Stdout and Stderr unset.
func NoSecret(t testing.TB, addr string, cmd func(url string) *exec.Cmd) {
	t.Helper()
	for _, url := range secretURLs(t, addr) {
		c := cmd(url)
		var stdout bytes.Buffer
		c.Stdout = &stdout
		status, stderr, err := Run(c)
		if status == 0 || strings.Contains(stdout.String()+stderr, Secret) {
			t.Errorf("%v with %q: %v, stdout %q, stderr %q; want a failure and no password", c.Args, url, err, stdout.String(), stderr)
		}
	}
}
