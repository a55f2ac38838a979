package bus

import "unsafe"

// framePointer returns the frame pointer (BP) of its caller, or of the
// ABI wrapper in between: calibrateFP measures which.
func framePointer() unsafe.Pointer

// fpPCs fills pcs with the return PCs of the chain of frame pointers,
// from its own frame up, and returns how many it found. It runs without
// a stack check, so that the stack cannot move while it walks it.
//
//go:nosplit
//go:noinline
func fpPCs(pcs []uintptr) int {
	fp := framePointer()
	n := 0
	for ; n < len(pcs) && fp != nil; n++ {
		pcs[n] = *(*uintptr)(unsafe.Add(fp, unsafe.Sizeof(uintptr(0))))
		fp = *(*unsafe.Pointer)(fp)
	}
	return n
}

// fpPC is fpPCs for the one PC at hops, 0 when the chain is shorter.
//
//go:nosplit
//go:noinline
func fpPC(hops int) uintptr {
	fp := framePointer()
	for ; hops > 0 && fp != nil; hops-- {
		fp = *(*unsafe.Pointer)(fp)
	}
	if fp == nil {
		return 0
	}
	return *(*uintptr)(unsafe.Add(fp, unsafe.Sizeof(uintptr(0))))
}
