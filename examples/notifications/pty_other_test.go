//go:build !linux

package main

import (
	"errors"
	"os"
)

// openPTY is implemented on Linux only; the tests that need a terminal
// skip elsewhere.
func openPTY() (pty, tty *os.File, err error) {
	return nil, nil, errors.New("no pseudo-terminal support on this system in this test")
}
