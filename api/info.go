package api

import (
	"context"
	"net/http"
	"net/url"
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
