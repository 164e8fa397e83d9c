package acme

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"time"
)

// backoffState is one scope's run of failures: a name set's orders, a
// registered domain's, or an account's.
type backoffState struct {
	Failures  int       `json:"failures,omitempty"`   // consecutive failed orders
	NextAt    time.Time `json:"next_at,omitzero"`     // no order before this
	LastError string    `json:"last_error,omitempty"` // the last failure's
}

// orderState is a name set's ordering history.
type orderState struct {
	backoffState
	Names    []string  `json:"names"`
	Email    string    `json:"email,omitempty"`    // its account
	Orders   int       `json:"orders"`             // orders started, ever
	InFlight time.Time `json:"in_flight,omitzero"` // an order started then and not finished: a crash interrupted it
	LastSeen time.Time `json:"last_seen,omitzero"` // last wanted (entries unseen for long are pruned)
	LastOK   time.Time `json:"last_ok,omitzero"`   // last certificate issued
}

// budget is what budget.json holds: the rate-limit budget, persisted so a
// restart resets nothing.
type budget struct {
	Orders   map[string]*orderState   `json:"orders"`   // name set key → state
	Domains  map[string]*backoffState `json:"domains"`  // registered domain → state
	Accounts map[string]*backoffState `json:"accounts"` // account email → state
}

const budgetFile = "budget.json"

// pruneAfter is how long an order state is kept for a name set no longer
// wanted: a container that comes back within it finds its backoff.
const pruneAfter = 30 * 24 * time.Hour

func (s *storage) loadBudget() (*budget, error) {
	b := &budget{}
	if err := s.readJSON(budgetFile, b); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if b.Orders == nil {
		b.Orders = map[string]*orderState{}
	}
	if b.Domains == nil {
		b.Domains = map[string]*backoffState{}
	}
	if b.Accounts == nil {
		b.Accounts = map[string]*backoffState{}
	}
	return b, nil
}

func (s *storage) saveBudget(b *budget) error { return s.writeJSON(budgetFile, b) }

// backoff is the policy: the n-th consecutive failure waits min·2^(n-1),
// at most max, jittered by ±20%.
type backoff struct{ min, max time.Duration }

func (p backoff) delay(n int) time.Duration {
	d := p.min
	for i := 1; i < n && d < p.max; i++ {
		d *= 2
	}
	d = min(d, p.max)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// fail records one failure of s at now.
func (s *backoffState) fail(p backoff, now time.Time, err error, free int) {
	s.Failures++
	s.LastError = err.Error()
	if s.Failures > free {
		s.NextAt = now.Add(p.delay(s.Failures - free))
	}
}

func (s *backoffState) ok() { *s = backoffState{} }

// accountFreeFailures is how many consecutive failed orders an account
// takes before it backs off as a whole (each name set and domain backs off
// from its first failure).
const accountFreeFailures = 3

// merge folds another host's budget (the previous leader's, from the
// store) into b, keeping the stricter of each: the later next order, the
// longer run of failures, the higher order count. An order that host
// left in flight (it died during it) counts as a failed one.
func (b *budget) merge(o *budget, p backoff, now time.Time) {
	for k, src := range o.Orders {
		if !src.InFlight.IsZero() {
			src.InFlight = time.Time{}
			src.fail(p, now, errors.New("interrupted: the previous ACME leader stopped during the order"), 0)
		}
		dst := b.Orders[k]
		if dst == nil {
			b.Orders[k] = src
			continue
		}
		dst.mergeFrom(&src.backoffState)
		dst.Orders = max(dst.Orders, src.Orders)
		if src.LastOK.After(dst.LastOK) {
			dst.LastOK = src.LastOK
		}
		if src.LastSeen.After(dst.LastSeen) {
			dst.LastSeen = src.LastSeen
		}
	}
	for _, pair := range []struct{ dst, src map[string]*backoffState }{{b.Domains, o.Domains}, {b.Accounts, o.Accounts}} {
		for k, src := range pair.src {
			if dst := pair.dst[k]; dst != nil {
				dst.mergeFrom(src)
			} else {
				pair.dst[k] = src
			}
		}
	}
}

func (s *backoffState) mergeFrom(o *backoffState) {
	if o.NextAt.After(s.NextAt) {
		s.NextAt, s.LastError = o.NextAt, o.LastError
	}
	s.Failures = max(s.Failures, o.Failures)
}
