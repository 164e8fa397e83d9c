package acme

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthd/berth/store/memstore"
)

// The gates of the budget: a failed order holds back its name set, every
// name set of its registered domain, and, after accountFreeFailures in a
// row, the whole account; all of it survives a restart (a new Manager on
// the same storage).
func TestBudgetGates(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DirectoryURL: "https://127.0.0.1:1/dir", Storage: filepath.Join(dir, "s"), CertsDir: filepath.Join(dir, "c"),
		RetryMin: time.Minute, RetryMax: time.Hour}
	st := memstore.New()
	defer st.Close()
	m, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a := want{names: []string{"a.shop.example.co.uk"}, email: "x@example.com"}
	b := want{names: []string{"b.shop.example.co.uk"}, email: "x@example.com"}
	c := want{names: []string{"c.other.example"}, email: "x@example.com"}
	d := want{names: []string{"d.third.example"}, email: "y@example.com"}
	state := func(w want) *orderState {
		o := m.budget.Orders[w.key()]
		if o == nil {
			o = &orderState{Names: w.names, Email: w.email}
			m.budget.Orders[w.key()] = o
		}
		return o
	}
	m.failOrder(state(a), now, errors.New("validation failed"))
	for _, tc := range []struct {
		w    want
		held bool
	}{{a, true}, {b, true}, {c, false}, {d, false}} { // b: the same registered domain, example.co.uk
		if g, why := m.gate(tc.w, state(tc.w), now); g.IsZero() == tc.held {
			t.Errorf("%s: gate %v (%s), held want %v", tc.w.key(), g, why, tc.held)
		}
	}
	if g, _ := m.gate(a, state(a), now); g.Sub(now) < 48*time.Second || g.Sub(now) > 72*time.Second {
		t.Errorf("first backoff %s, want 1m ±20%%", g.Sub(now))
	}
	for range accountFreeFailures {
		m.failOrder(state(a), now, errors.New("validation failed"))
	}
	if g, why := m.gate(c, state(c), now); g.IsZero() {
		t.Errorf("account x@ not held after %d failures in a row", accountFreeFailures+1)
	} else {
		t.Logf("c held: %s", why)
	}
	if g, _ := m.gate(d, state(d), now); !g.IsZero() {
		t.Error("another account held")
	}
	if err := m.storage.saveBudget(m.budget); err != nil {
		t.Fatal(err)
	}
	m2, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := m2.gate(a, m2.budget.Orders[a.key()], now); g.IsZero() || m2.budget.Orders[a.key()].Failures != 4 {
		t.Errorf("the backoff did not survive a restart: %+v", m2.budget.Orders[a.key()])
	}
}
