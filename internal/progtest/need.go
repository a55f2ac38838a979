package progtest

import (
	"os"
	"os/exec"
	"testing"
)

// Need returns the path of the program name on PATH. When it is missing,
// Need fails the test under CI=true, where the test command installs
// everything, and skips it otherwise, saying to run install.
func Need(t testing.TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not on PATH (%v), and CI=true requires this test: %s", name, err, install)
	}
	t.Skipf("%s is not on PATH (%v): %s to run this test", name, err, install)
	return ""
}
