package certs

import (
	"slices"
	"strings"
	"time"
)

// Cert is one certificate pair of the directory, parsed and checked: the
// key matches the certificate, which is valid now.
type Cert struct {
	Name     string    // the files' base name: "example.com" for example.com.crt and example.com.key
	CertFile string    // absolute path of <Name>.crt (PEM: leaf first, then the chain)
	KeyFile  string    // absolute path of <Name>.key
	Subject  string    // the leaf's common name
	SANs     []string  // the leaf's DNS names
	NotAfter time.Time // the leaf's expiry
	// Digest is the SHA-256 (hex) of the two files' content: it changes
	// when the pair is renewed or replaced.
	Digest string
}

// Match is the certificate the lookup chose for a host, and why.
type Match struct {
	Cert
	// Via says which step of the lookup found it: "host" (<host>.crt),
	// "parent" (the longest parent domain with a certificate, such as a
	// wildcard's: example.com.crt for a.example.com), "CERT_NAME" or
	// "default" (default.crt).
	Via string
}

// DefaultName is the name of the default certificate (default.crt).
const DefaultName = "default"

// Set is the valid certificates of one directory at one moment. It is
// immutable; a nil *Set is an empty one.
type Set struct {
	dir   string
	certs map[string]Cert
}

// NewSet returns the set of certs (by Name; a later one replaces an
// earlier one of the same name) of dir.
func NewSet(dir string, certs []Cert) *Set {
	s := &Set{dir: dir, certs: make(map[string]Cert, len(certs))}
	for _, c := range certs {
		s.certs[c.Name] = c
	}
	return s
}

// Dir is the certificate directory.
func (s *Set) Dir() string {
	if s == nil {
		return ""
	}
	return s.dir
}

// Len is the number of certificates.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.certs)
}

// List returns the certificates sorted by name.
func (s *Set) List() []Cert {
	if s == nil {
		return nil
	}
	out := make([]Cert, 0, len(s.certs))
	for _, c := range s.certs {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Cert) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get returns the certificate named name, or nil.
func (s *Set) Get(name string) *Cert {
	if s == nil {
		return nil
	}
	if c, ok := s.certs[name]; ok {
		return &c
	}
	return nil
}

// Default returns default.crt, or nil.
func (s *Set) Default() *Cert { return s.Get(DefaultName) }

// For returns the certificate host is served with, or nil, in
// nginx-proxy's order: CERT_NAME when certName is set (nginx-proxy takes
// it over any name match); otherwise <host>.crt, then the longest parent
// domain that has one (a wildcard certificate's file, example.com.crt,
// serves a.example.com and a.b.example.com; parents are whole labels,
// unlike nginx-proxy's plain string suffix); then default.crt. A name the
// set does not hold (missing, or left out as invalid) falls through to
// the default. Host names are compared in lower case; a regular
// expression host (~...) matches only through CERT_NAME or the default.
func (s *Set) For(host, certName string) *Match {
	if s == nil {
		return nil
	}
	if certName != "" {
		if c := s.Get(certName); c != nil {
			return &Match{Cert: *c, Via: "CERT_NAME"}
		}
	} else if host != "" && !strings.HasPrefix(host, "~") {
		h := strings.ToLower(host)
		if c := s.Get(h); c != nil {
			return &Match{Cert: *c, Via: "host"}
		}
		for i := strings.IndexByte(h, '.'); i >= 0; i = strings.IndexByte(h, '.') {
			h = h[i+1:]
			if !strings.Contains(h, ".") {
				break // never a top-level domain alone
			}
			if c := s.Get(h); c != nil {
				return &Match{Cert: *c, Via: "parent"}
			}
		}
	}
	if c := s.Default(); c != nil {
		return &Match{Cert: *c, Via: "default"}
	}
	return nil
}

// equal reports whether a and b hold the same pairs.
func (s *Set) equal(o *Set) bool {
	if s.Len() != o.Len() || s.Dir() != o.Dir() {
		return false
	}
	for n, c := range s.certs {
		d, ok := o.certs[n]
		if !ok || c.Digest != d.Digest || c.CertFile != d.CertFile {
			return false
		}
	}
	return true
}
