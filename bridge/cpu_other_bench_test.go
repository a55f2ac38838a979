//go:build !unix

package bridge_test

import "time"

// processCPU returns 0 where getrusage is not available: the benchmarks
// then report no cpu-ns/event.
func processCPU() time.Duration { return 0 }
