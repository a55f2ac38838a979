package redistest

import "syscall"

// sysProcAttr puts redis-server in its own process group, so Kill can signal
// the group, and asks the kernel to SIGKILL it if the test binary dies first
// (a go test timeout exits without running cleanups).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
