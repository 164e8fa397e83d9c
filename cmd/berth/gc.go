package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
)

// oneShotHeap is how large the heap of a one-shot command (berth render,
// berth plan, berth watch --once) may grow before its first collection.
const oneShotHeap = 128 << 20

// deferGC is the garbage collection of a process that renders once and
// exits: no collection until the heap reaches limit (a render of 10,000
// keys allocates ~35 MB and then exits, so it never collects: the
// collector was ~15% of its CPU, issue #14); the first collection, if the
// heap gets there, restores the usual pacing (GOGC=100, no limit), so a
// larger store costs what it did, never a collection per allocation. A
// GOGC or GOMEMLIMIT of the environment is left as it is (and nil
// returned). The returned channel is closed once the pacing is restored.
func deferGC(limit int64) <-chan struct{} {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	restored := make(chan struct{})
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(limit)
	// A finalizer runs after the first collection that finds its object
	// unreachable: the first collection from now. The pointer field keeps
	// the object out of the tiny allocator, whose blocks may never be
	// freed.
	sentinel := &struct{ p *int }{}
	runtime.SetFinalizer(sentinel, func(*struct{ p *int }) {
		// The runtime's defaults (the environment sets neither): also
		// right when calls overlap, where the values one call found
		// would be the other's.
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
		close(restored)
	})
	return restored
}
