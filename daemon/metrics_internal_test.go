package daemon

import (
	"testing"
	"time"

	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
)

// TestUnitReloadPacingMetrics: a reload's measured cost, its generation
// wait and a pacing delay reach their histograms; an attempt that did
// not reload and was not paced adds to none of them.
func TestUnitReloadPacingMetrics(t *testing.T) {
	m := newMetrics()
	m.observeRender(runner.Observation{Template: "web", Paced: time.Second,
		Result: render.Result{Changed: true, Reloaded: true, Cost: 300 * time.Millisecond, GenerationWait: 200 * time.Millisecond}})
	m.observeRender(runner.Observation{Template: "web", Result: render.Result{}})
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"berth_reload_cost_seconds":            0.3,
		"berth_reload_pacing_seconds":          1,
		"berth_reload_generation_wait_seconds": 0.2,
	}
	for _, f := range fams {
		sum, ok := want[f.GetName()]
		if !ok {
			continue
		}
		delete(want, f.GetName())
		h := f.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 1 || h.GetSampleSum() != sum {
			t.Errorf("%s: count %d sum %v, want 1 and %v", f.GetName(), h.GetSampleCount(), h.GetSampleSum(), sum)
		}
	}
	for name := range want {
		t.Errorf("/metrics lacks %s", name)
	}
}
