package bus

import "runtime"

// Where a subscription was made.
//
// runtime.Callers walks the stack with the tables of every function (their
// frame sizes and inlining), which made it the largest single cost of a
// Subscribe: 200-500 ns for the three frames up to the user's call. On
// amd64 the stack also holds a chain of frame pointers, which callerPC
// follows instead, a load per frame, as the runtime's execution tracer
// does. The functions between the user's call and callerPC are never
// inlined (a noinline directive on each), so that the chain's frames are
// the logical frames that runtime.Callers counts. fpOffset is measured against runtime.Callers
// when the package starts (calibrateFP); where frame pointers are absent
// or it finds a mismatch, callerPC falls back to runtime.Callers.

// fpOffset is what callerPC adds to its m to get fpPC's hops; fpOK says
// that calibrateFP found it, and that callerPC may use it.
var fpOffset, fpOK = calibrateFP()

// callerPC returns the return PC of frame m above it, callerPC itself
// being frame 0: what runtime.Callers(m+1, ...) returns first.
//
//go:noinline
func callerPC(m int) uintptr {
	if !fpOK {
		return callersPC(m + 1)
	}
	return fpPC(fpOffset + m)
}

// callersPC is callerPC through runtime.Callers: the return PC of frame m
// above it, callersPC itself being frame 0.
//
//go:noinline
func callersPC(m int) uintptr {
	var pc [1]uintptr
	runtime.Callers(m+1, pc[:])
	return pc[0]
}

// calibrateFP returns fpOffset: it compares the frame-pointer chain with
// what runtime.Callers reports, over frames of its own (runtime.Callers
// leaves out some wrappers, such as those of go statements, that the
// chain has).
func calibrateFP() (int, bool) { return calibrateA() }

//go:noinline
func calibrateA() (int, bool) { return calibrateB() }

//go:noinline
func calibrateB() (int, bool) {
	var fp [8]uintptr
	n := fpPCs(fp[:])
	var rt [3]uintptr
	// Counted from fpPCs as frame 0: rt[0] is in calibrateB (frame 1),
	// rt[1] in calibrateA (frame 2), rt[2] in calibrateFP (frame 3).
	if runtime.Callers(1, rt[:]) < 3 {
		return 0, false
	}
	for i := 0; i+1 < n; i++ {
		if fp[i] == rt[1] && fp[i+1] == rt[2] {
			// fp[i] is frame 2 counted from fpPCs: fp[j] is frame j+1
			// in a chain without wrappers. callerPC's frame m is fpPC's
			// frame m+1.
			return i - 1, true
		}
	}
	return 0, false
}
