package api

import (
	"context"
	"net/http"
)

// CatalogRefuser is what GET /v1/catalog/refused serves: the containers
// (by id) with a service the Consul agent refused, and why;
// *daemon.Daemon implements it.
type CatalogRefuser interface {
	CatalogRefused(ctx context.Context) (map[string]string, error)
}

// WithCatalogRefused serves r on the API, for berth explain:
//
//	GET /v1/catalog/refused  {container id: reason}, {} without a catalog registry
func WithCatalogRefused(r CatalogRefuser) ServerOption {
	return func(s *Server) {
		s.mux.HandleFunc("GET /v1/catalog/refused", func(w http.ResponseWriter, req *http.Request) {
			m, err := r.CatalogRefused(req.Context())
			if err != nil {
				s.fail(w, req, err)
				return
			}
			if m == nil {
				m = map[string]string{}
			}
			writeJSON(w, http.StatusOK, m)
		})
	}
}

// CatalogRefused asks the daemon which containers the Consul agent refused
// a service of, and why, by container id.
func (c *Client) CatalogRefused(ctx context.Context) (map[string]string, error) {
	var out map[string]string
	err := c.call(ctx, http.MethodGet, "/v1/catalog/refused", nil, nil, &out)
	return out, err
}
