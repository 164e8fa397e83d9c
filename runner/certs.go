package runner

import (
	"slices"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/watcher"
)

// WithCerts makes every template read the certificate store cs as one
// more source (watcher.Certs, key watcher.CertKey): its templates see it
// as .Certs, and a certificate added, renewed or left out re-renders
// them (a template that does not read it renders the same bytes, a
// no-op). The runner runs cs. It composes with WithSources.
func WithCerts(cs *certs.Store) Option { return func(r *Runner) { r.certs = cs } }

// withCertKey is keys and the certificate source's key, if any.
func (r *Runner) withCertKey(keys []string) []string {
	if r.certs == nil {
		return keys
	}
	return append(slices.Clip(keys), watcher.CertKey(r.certs.Dir()))
}

// certSource is the certificate source if key is its key.
func (r *Runner) certSource(key string) (Source, bool) {
	if r.certs == nil || key != watcher.CertKey(r.certs.Dir()) {
		return nil, false
	}
	return watcher.NewCerts(r.certs), true
}
