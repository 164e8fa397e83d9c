package config

import "path/filepath"

// Certs is the [certs] table: the certificate directory berth up reads
// (package certs: <name>.crt with <name>.key, nginx-proxy's convention;
// the ACME client writes there too). Every template reads it as .Certs.
//
//	[certs]
//	dir = "/etc/berth/certs"   # default <state_dir>/certs
type Certs struct {
	Dir string `toml:"dir"`
}

// resolve makes Dir relative to dir (the configuration's).
func (c Certs) resolve(dir string) Certs {
	c.Dir = relTo(dir, c.Dir)
	return c
}

// DirFor is the certificate directory: Dir, or <stateDir>/certs.
func (c Certs) DirFor(stateDir string) string {
	if c.Dir != "" {
		return c.Dir
	}
	return filepath.Join(stateDir, "certs")
}
