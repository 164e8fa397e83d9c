package acme

import (
	"cmp"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the berth_acme_* series.
type metrics struct {
	orders     *prometheus.CounterVec // result: started, issued, failed, interrupted
	failures   *prometheus.CounterVec // scope: order, account
	collectors []prometheus.Collector
}

func newMetrics(m *Manager) *metrics {
	x := &metrics{
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "berth", Subsystem: "acme", Name: "orders_total",
			Help: "ACME orders by result: started, issued, failed, interrupted (by a stop, counted at the next start)."}, []string{"result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "berth", Subsystem: "acme", Name: "failures_total",
			Help: "ACME failures by scope: order (a failed order), account (the CA unreachable or refusing the account; no order sent)."}, []string{"scope"}),
	}
	gauge := func(name, help string, f func(Status) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "berth", Subsystem: "acme", Name: name, Help: help},
			func() float64 { return f(m.Status()) })
	}
	x.collectors = []prometheus.Collector{x.orders, x.failures,
		gauge("leader", "1 while this host is the ACME leader (the one that orders).", func(s Status) float64 {
			if s.Leader {
				return 1
			}
			return 0
		}),
		gauge("certificates", "Host names with a certificate written to the certificate directory.", func(s Status) float64 { return float64(len(s.Certificates)) }),
		gauge("invalid_names", "Names containers ask certificates for that are never ordered (not a valid DNS name, a wildcard, an IP address).", func(s Status) float64 { return float64(len(s.Invalid)) }),
		gauge("backoff_name_sets", "Name sets whose orders are backing off after failures.", func(s Status) float64 { return float64(countBacking(s.Orders)) }),
		gauge("backoff_domains", "Registered domains backing off after failed orders.", func(s Status) float64 { return float64(countBacking(s.Domains)) }),
		gauge("backoff_accounts", "ACME accounts backing off (the CA unreachable, or repeated failures).", func(s Status) float64 { return float64(countBacking(s.Accounts)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "berth", Subsystem: "acme", Name: "next_order_seconds",
			Help: "Seconds until the earliest backed-off order may be sent again (0: none waiting)."}, func() float64 {
			var first time.Time
			for _, b := range m.Status().Orders {
				if b.Until.After(time.Now()) && (first.IsZero() || b.Until.Before(first)) {
					first = b.Until
				}
			}
			if first.IsZero() {
				return 0
			}
			return time.Until(first).Seconds()
		}),
	}
	return x
}

func countBacking(bs []Backoff) int {
	n := 0
	for _, b := range bs {
		if b.Until.After(time.Now()) {
			n++
		}
	}
	return n
}

// Collectors are the berth_acme_* metrics, to register on the daemon's
// registry.
func (m *Manager) Collectors() []prometheus.Collector { return m.m.collectors }

// Status is the manager's state: the budget and the certificates.
type Status struct {
	Leader       bool         `json:"leader"`
	Certificates []CertStatus `json:"certificates"`
	Orders       []Backoff    `json:"orders"`   // per name set
	Domains      []Backoff    `json:"domains"`  // per registered domain
	Accounts     []Backoff    `json:"accounts"` // per account e-mail ("" is the default account)
	Invalid      []Invalid    `json:"invalid,omitempty"`
}

// CertStatus is one host's certificate in the certificate directory.
type CertStatus struct {
	Host     string    `json:"host"`
	NotAfter time.Time `json:"not_after"`
}

// Backoff is one scope of the budget.
type Backoff struct {
	Scope     string    `json:"scope"`            // the name set, the domain or the account
	Orders    int       `json:"orders,omitempty"` // orders started, ever (name sets)
	Failures  int       `json:"failures"`         // consecutive failures
	Until     time.Time `json:"until,omitzero"`   // no order before
	LastError string    `json:"last_error,omitempty"`
}

// Status returns the current state.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{Leader: m.leader, Invalid: slices.Clone(m.invalid)}
	for h, c := range m.served {
		s.Certificates = append(s.Certificates, CertStatus{Host: h, NotAfter: c.NotAfter})
	}
	for k, o := range m.budget.Orders {
		s.Orders = append(s.Orders, Backoff{Scope: k, Orders: o.Orders, Failures: o.Failures, Until: o.NextAt, LastError: o.LastError})
	}
	for k, d := range m.budget.Domains {
		s.Domains = append(s.Domains, Backoff{Scope: k, Failures: d.Failures, Until: d.NextAt, LastError: d.LastError})
	}
	for k, a := range m.budget.Accounts {
		s.Accounts = append(s.Accounts, Backoff{Scope: k, Failures: a.Failures, Until: a.NextAt, LastError: a.LastError})
	}
	slices.SortFunc(s.Certificates, func(a, b CertStatus) int { return cmp.Compare(a.Host, b.Host) })
	for _, l := range [][]Backoff{s.Orders, s.Domains, s.Accounts} {
		slices.SortFunc(l, func(a, b Backoff) int { return cmp.Compare(a.Scope, b.Scope) })
	}
	return s
}
