package config

import (
	"fmt"
	"time"
)

// Catalog is the [catalog] table: the Consul agent whose catalog the
// native templates' service, services, node and nodes functions read
// (consul-template's, see package catalog). Without an address those
// functions fail.
//
//	[catalog]
//	address = "127.0.0.1:8500"   # a Consul agent's HTTP API (http[s]://host:port or host:port); required
//	token = "..."                # ACL token: service:read and node:read (default: CONSUL_HTTP_TOKEN)
//	wait = "5m"                  # how long one blocking query waits for a change
//
// A template may add max_stale = "10s": its queries are then answered by
// any server whose data is at most that old, as consul-template's
// max_stale.
type Catalog struct {
	Address string `toml:"address"`
	Token   string `toml:"token"`
	Wait    string `toml:"wait"`
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
