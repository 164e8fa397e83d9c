package watcher

import (
	"context"

	"github.com/berthd/berth/certs"
)

// CertKey is the source key of a certificate directory: what a template
// names (with runner.WithSources) to read it as .Certs.
func CertKey(dir string) string { return "certs:" + dir }

// Certs is a certificate store as a runner.Source: its snapshots carry
// the store's Set (Snapshot.Certs) and its generation, no keys.
type Certs struct{ st *certs.Store }

// NewCerts adapts st; Run runs st.
func NewCerts(st *certs.Store) *Certs { return &Certs{st: st} }

// Run keeps the store current until ctx ends.
func (c *Certs) Run(ctx context.Context) { c.st.Run(ctx) }

// Synced is closed after the first read of the directory.
func (c *Certs) Synced() <-chan struct{} { return c.st.Synced() }

// Subscribe is notified after each change of the set.
func (c *Certs) Subscribe() (<-chan struct{}, func()) { return c.st.Subscribe() }

// Snapshot is the set now; a new set has a new generation.
func (c *Certs) Snapshot() Snapshot {
	set, gen := c.st.Current()
	return Snapshot{Certs: set, Generation: gen}
}

// Health names the directory and its last read error.
func (c *Certs) Health() Health {
	h := Health{Prefix: CertKey(c.st.Dir())}
	select {
	case <-c.st.Synced():
		h.Synced = true
	default:
	}
	h.LastError, h.LastErrorAt = c.st.LastError()
	return h
}
