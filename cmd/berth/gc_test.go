package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestDeferGC: a one-shot command collects nothing until its heap reaches
// the limit; the first collection restores the runtime's default pacing;
// GOGC or GOMEMLIMIT in the environment are left alone.
func TestDeferGC(t *testing.T) {
	t.Run("deferred then restored", func(t *testing.T) {
		t.Setenv("GOGC", "")
		t.Setenv("GOMEMLIMIT", "")
		restored := deferGC(1 << 30)
		if restored == nil {
			t.Fatal("deferGC did nothing")
		}
		if pct := debug.SetGCPercent(-1); pct != -1 {
			t.Errorf("GC percent = %d after deferGC, want -1 (off)", pct)
		}
		if lim := debug.SetMemoryLimit(-1); lim != 1<<30 { // -1: read only
			t.Errorf("memory limit = %d after deferGC, want %d", lim, 1<<30)
		}
		runtime.GC()
		select {
		case <-restored:
		case <-time.After(10 * time.Second):
			t.Fatal("the first collection did not restore the pacing")
		}
		if pct := debug.SetGCPercent(100); pct != 100 {
			t.Errorf("GC percent = %d after the first collection, want 100", pct)
		}
		if lim := debug.SetMemoryLimit(-1); lim != math.MaxInt64 {
			t.Errorf("memory limit = %d after the first collection, want none", lim)
		}
	})
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env+" set", func(t *testing.T) {
			t.Setenv("GOGC", "")
			t.Setenv("GOMEMLIMIT", "")
			t.Setenv(env, "200")
			before := debug.SetGCPercent(-1)
			debug.SetGCPercent(before)
			if deferGC(1<<30) != nil {
				t.Errorf("deferGC changed the pacing with %s set", env)
			}
			if pct := debug.SetGCPercent(before); pct != before {
				t.Errorf("GC percent = %d, want %d (untouched)", pct, before)
			}
		})
	}
}
