package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/berthd/berth/config"
)

// Info is what GET /v1/info reports about the daemon: where its state and
// its store are, so that berth's store commands (kv, render, watch) pointed
// at the daemon's socket use the daemon's store.
type Info struct {
	// StateDir is the daemon's state directory.
	StateDir string `json:"state_dir"`
	// Store is the daemon's store URL, without credentials; empty means
	// the embedded store under StateDir.
	Store string `json:"store,omitempty"`
	// Prefix is the key prefix of the daemon's records; empty means
	// records.DefaultPrefix.
	Prefix string `json:"prefix,omitempty"`
	// Catalog is the Consul agent whose catalog the daemon's templates
	// read (nil: none), for berth render and plan.
	Catalog *CatalogInfo `json:"catalog,omitempty"`
}

// CatalogInfo is the daemon's [catalog] without its token: a command
// using it reads token_file (when it may) or its own CONSUL_HTTP_TOKEN.
type CatalogInfo struct {
	Address    string `json:"address,omitempty"` // "": CONSUL_HTTP_ADDR, else 127.0.0.1:8500
	TokenFile  string `json:"token_file,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	Wait       string `json:"wait,omitempty"`
}

// CatalogOf is c as Info reports it (nil when c is not Enabled).
func CatalogOf(c config.Catalog) *CatalogInfo {
	if !c.Enabled() {
		return nil
	}
	return &CatalogInfo{Address: c.Address, TokenFile: c.TokenFile, Datacenter: c.Datacenter, Wait: c.Wait}
}

// Config is the [catalog] info names (FromRegistry when it has no
// address: enabled all the same).
func (i CatalogInfo) Config() config.Catalog {
	return config.Catalog{Address: i.Address, TokenFile: i.TokenFile, Datacenter: i.Datacenter, Wait: i.Wait, FromRegistry: i.Address == ""}
}

// DaemonInfo is what a daemon reports whose state directory is stateDir,
// whose store is storeURL ("": the embedded store under stateDir) and
// whose records are under prefix: the URL without its credentials.
func DaemonInfo(stateDir, storeURL, prefix string) Info {
	info := Info{StateDir: stateDir, Prefix: prefix}
	if storeURL != "" {
		if u, err := url.Parse(storeURL); err == nil {
			u.User = nil
			info.Store = u.String()
		}
	}
	return info
}

// WithInfo sets what GET /v1/info reports. Without it the state directory
// comes from the backend (when it has a StateDir method) and Store is empty.
func WithInfo(info Info) ServerOption { return func(s *Server) { s.info = &info } }

func (s *Server) infoHandler(w http.ResponseWriter, _ *http.Request) {
	info := Info{}
	if s.info != nil {
		info = *s.info
	}
	if sd, ok := s.b.(interface{ StateDir() string }); ok && info.StateDir == "" {
		info.StateDir = sd.StateDir()
	}
	writeJSON(w, http.StatusOK, info)
}

// Info asks the daemon where its state and store are.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var out Info
	err := c.call(ctx, http.MethodGet, "/v1/info", nil, nil, &out)
	return out, err
}
