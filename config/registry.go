package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Registry kinds: where berth up registers this host's containers.
const (
	RegistryKV            = "kv"             // the store's records (the default)
	RegistryConsulCatalog = "consul-catalog" // services of the local Consul agent
)

// MinDeregisterAfter is Consul's minimum DeregisterCriticalServiceAfter.
const MinDeregisterAfter = time.Minute

// Registry is the [registry] table: where berth up registers this host's
// containers, and how it reaches the Consul agent of a catalog registry:
//
//	[registry]
//	kind = ["kv", "consul-catalog"]          # "kv" (default), "consul-catalog", or both
//	address = "127.0.0.1:8500"               # the local agent (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500)
//	token_file = "/etc/berth/consul.token"   # an ACL token with service:write (default: CONSUL_HTTP_TOKEN)
//	datacenter = "dc1"                       # for reading the catalog (default: the agent's); registration goes to the local agent
//	check_ttl = "30s"                        # TTL of the checks berth renews (renewed every third of it)
//	deregister_after = "1m"                  # a dead daemon's services are removed by Consul after this (>= 1m)
//
// token = "..." is accepted too, but a file (mode 0600) keeps the secret
// out of berth.toml.
type Registry struct {
	Kinds           []string // RegistryKV and/or RegistryConsulCatalog; empty: RegistryKV
	Address         string
	Token           string
	TokenFile       string
	Datacenter      string
	CheckTTL        time.Duration // 0: the default
	DeregisterAfter time.Duration // 0: the default
}

// Has reports whether the registry includes kind (an empty Kinds is
// RegistryKV).
func (r Registry) Has(kind string) bool {
	if len(r.Kinds) == 0 {
		return kind == RegistryKV
	}
	return slices.Contains(r.Kinds, kind)
}

// ReadToken returns the ACL token: token_file's content, else token ("":
// none set).
func (r Registry) ReadToken() (string, error) { return readToken("[registry]", r.Token, r.TokenFile) }

// readToken returns file's content (trimmed), else token; table names the
// table in errors.
func readToken(table, token, file string) (string, error) {
	if file == "" {
		return token, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s token_file: %w", table, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s token_file: %s is empty", table, file)
	}
	return t, nil
}

// registryTable is [registry] as decoded: kind is a string or a list.
type registryTable struct {
	Kind            any    `toml:"kind"`
	Address         string `toml:"address"`
	Token           string `toml:"token"`
	TokenFile       string `toml:"token_file"`
	Datacenter      string `toml:"datacenter"`
	CheckTTL        string `toml:"check_ttl"`
	DeregisterAfter string `toml:"deregister_after"`
}

// resolve validates the table; relative paths are relative to dir.
func (t registryTable) resolve(dir string) (Registry, error) {
	r := Registry{Address: t.Address, Token: t.Token, TokenFile: relTo(dir, t.TokenFile), Datacenter: t.Datacenter}
	switch k := t.Kind.(type) {
	case nil:
	case string:
		r.Kinds = []string{k}
	case []any:
		for _, v := range k {
			s, ok := v.(string)
			if !ok {
				return r, fmt.Errorf("kind: %v is not a string", v)
			}
			r.Kinds = append(r.Kinds, s)
		}
		if len(r.Kinds) == 0 {
			return r, fmt.Errorf("kind: an empty list registers nothing (want %q, %q or both)", RegistryKV, RegistryConsulCatalog)
		}
	default:
		return r, fmt.Errorf("kind: want a string or a list of strings")
	}
	for i, k := range r.Kinds {
		switch {
		case k != RegistryKV && k != RegistryConsulCatalog:
			return r, fmt.Errorf("kind %q: want %q or %q", k, RegistryKV, RegistryConsulCatalog)
		case slices.Contains(r.Kinds[:i], k):
			return r, fmt.Errorf("kind %q given twice", k)
		}
	}
	if t.Token != "" && t.TokenFile != "" {
		return r, fmt.Errorf("token and token_file: set one")
	}
	var err error
	if r.CheckTTL, err = parseDuration("check_ttl", t.CheckTTL); err != nil {
		return r, err
	}
	if r.CheckTTL != 0 && r.CheckTTL < 3*time.Second {
		return r, fmt.Errorf("check_ttl %q: want at least 3s", t.CheckTTL)
	}
	if r.DeregisterAfter, err = parseDuration("deregister_after", t.DeregisterAfter); err != nil {
		return r, err
	}
	if r.DeregisterAfter != 0 && r.DeregisterAfter < MinDeregisterAfter {
		return r, fmt.Errorf("deregister_after %q: Consul's minimum is %s", t.DeregisterAfter, MinDeregisterAfter)
	}
	return r, nil
}
