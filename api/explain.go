package api

import (
	"context"
	"net/http"

	"github.com/berthd/berth/explain"
)

// Templater is what GET /v1/templates serves: the daemon's templates and
// what each last did; *daemon.Daemon implements it.
type Templater interface {
	Templates(ctx context.Context) ([]explain.TemplateState, error)
}

// WithTemplates serves t on the API, for berth explain and berth plan:
//
//	GET /v1/templates  []explain.TemplateState, by name
func WithTemplates(t Templater) ServerOption {
	return func(s *Server) {
		s.mux.HandleFunc("GET /v1/templates", func(w http.ResponseWriter, r *http.Request) {
			ts, err := t.Templates(r.Context())
			if err != nil {
				s.fail(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, append([]explain.TemplateState{}, ts...))
		})
	}
}

// Templates asks the daemon for its templates and what each last did.
func (c *Client) Templates(ctx context.Context) ([]explain.TemplateState, error) {
	var out []explain.TemplateState
	err := c.call(ctx, http.MethodGet, "/v1/templates", nil, nil, &out)
	return out, err
}
