package config

import (
	"fmt"
	"time"
)

// Catalog is the [catalog] table: the Consul agent whose catalog the
// native templates' service, services, node and nodes functions read
// (consul-template's, see package catalog). Without an address those
// functions fail, unless [registry] registers in the Consul catalog: the
// catalog is then read from the registry's agent (FromRegistry).
//
//	[catalog]
//	address = "127.0.0.1:8500"   # a Consul agent's HTTP API (http[s]://host:port or host:port)
//	token_file = "/etc/berth/consul.token" # ACL token: service:read and node:read (default: CONSUL_HTTP_TOKEN); or token = "..."
//	datacenter = "dc1"           # of the queries without @dc (default: the agent's)
//	wait = "5m"                  # how long one blocking query waits for a change
//
// A template may add max_stale = "10s": its queries are then answered by
// any server whose data is at most that old, as consul-template's
// max_stale.
type Catalog struct {
	Address    string `toml:"address"`
	Token      string `toml:"token"`
	TokenFile  string `toml:"token_file"`
	Datacenter string `toml:"datacenter"`
	Wait       string `toml:"wait"`
	// FromRegistry is set by Load when the table names no address and
	// [registry] registers in the Consul catalog: the catalog is the
	// registry's agent, with its address, token and datacenter where the
	// table sets none ("" address: CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
	FromRegistry bool `toml:"-"`
}

// Enabled reports whether there is a catalog to read.
func (c Catalog) Enabled() bool { return c.Address != "" || c.FromRegistry }

// ReadToken returns the ACL token: token_file's content, else token ("":
// none set).
func (c Catalog) ReadToken() (string, error) { return readToken("[catalog]", c.Token, c.TokenFile) }

// withRegistry is the table after its defaults from r (see FromRegistry);
// relative paths are relative to dir.
func (c Catalog) withRegistry(r Registry, dir string) (Catalog, error) {
	if c.Token != "" && c.TokenFile != "" {
		return c, fmt.Errorf("[catalog] token and token_file: set one")
	}
	c.TokenFile = relTo(dir, c.TokenFile)
	if c.Address != "" || !r.Has(RegistryConsulCatalog) {
		return c, nil
	}
	c.FromRegistry, c.Address = true, r.Address
	if c.Token == "" && c.TokenFile == "" {
		c.Token, c.TokenFile = r.Token, r.TokenFile
	}
	if c.Datacenter == "" {
		c.Datacenter = r.Datacenter
	}
	return c, nil
}

// WaitTime returns the parsed wait (0: the default).
func (c Catalog) WaitTime() (time.Duration, error) {
	if c.Wait == "" {
		return 0, nil
	}
	d, err := parseDuration("wait", c.Wait)
	if err != nil {
		return 0, fmt.Errorf("[catalog] %w", err)
	}
	return d, nil
}
