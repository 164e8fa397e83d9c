package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/berthd/berth/deploy"
)

// Deployer is what the deploy endpoints serve; *deploy.Service
// implements it.
type Deployer interface {
	Deploy(ctx context.Context, req deploy.Request, progress func(deploy.Progress)) (deploy.Revision, error)
	Rollback(ctx context.Context, req deploy.RollbackRequest, progress func(deploy.Progress)) (deploy.Revision, error)
	History(ctx context.Context, service string) ([]deploy.Revision, error)
	Undeploy(ctx context.Context, service string, progress func(deploy.Progress)) (deploy.Revision, error)
}

// DeployFrame is one line of a deploy or rollback stream: progress, then
// a final frame with the revision (and, if it failed, the error).
type DeployFrame struct {
	Progress *deploy.Progress `json:"progress,omitempty"`
	Revision *deploy.Revision `json:"revision,omitempty"`
	Error    *Error           `json:"error,omitempty"`
}

// WithDeploys serves d on the API:
//
//	POST /v1/deployments/{service}           deploy.Request → DeployFrame stream
//	POST /v1/deployments/{service}/rollback  deploy.RollbackRequest → DeployFrame stream
//	GET  /v1/deployments/{service}           []deploy.Revision, oldest first
//	DELETE /v1/deployments/{service}         undeploy → DeployFrame stream
//
// The rollout runs while the request does: a client that goes away (its
// Ctrl-C) ends it, and the new containers are removed.
func WithDeploys(d Deployer) ServerOption {
	return func(s *Server) {
		s.mux.HandleFunc("POST /v1/deployments/{service}", func(w http.ResponseWriter, r *http.Request) {
			var req deploy.Request
			if err := decode(r, &req); err != nil {
				s.fail(w, r, err)
				return
			}
			req.Service = r.PathValue("service")
			s.deployStream(w, r, func(progress func(deploy.Progress)) (deploy.Revision, error) {
				return d.Deploy(r.Context(), req, progress)
			})
		})
		s.mux.HandleFunc("POST /v1/deployments/{service}/rollback", func(w http.ResponseWriter, r *http.Request) {
			var req deploy.RollbackRequest
			if err := decode(r, &req); err != nil {
				s.fail(w, r, err)
				return
			}
			req.Service = r.PathValue("service")
			s.deployStream(w, r, func(progress func(deploy.Progress)) (deploy.Revision, error) {
				return d.Rollback(r.Context(), req, progress)
			})
		})
		s.mux.HandleFunc("DELETE /v1/deployments/{service}", func(w http.ResponseWriter, r *http.Request) {
			service := r.PathValue("service")
			s.deployStream(w, r, func(progress func(deploy.Progress)) (deploy.Revision, error) {
				return d.Undeploy(r.Context(), service, progress)
			})
		})
		s.mux.HandleFunc("GET /v1/deployments/{service}", func(w http.ResponseWriter, r *http.Request) {
			hist, err := d.History(r.Context(), r.PathValue("service"))
			if err != nil {
				s.fail(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, append([]deploy.Revision{}, hist...))
		})
	}
}

// frameTimeout bounds the write of one frame of a deploy stream: a client
// that stops reading loses its progress frames, the rollout goes on.
const frameTimeout = 5 * time.Second

// deployStream streams a rollout's progress and its final revision. The
// frames go through a buffer to one writer with a write deadline per
// frame, so a stalled client never blocks the rollout: a progress frame
// that does not fit the buffer is left out, and once a write fails the
// stream is left (the rollout ends as it would have, and is recorded).
func (s *Server) deployStream(w http.ResponseWriter, r *http.Request, run func(func(deploy.Progress)) (deploy.Revision, error)) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	frames := make(chan DeployFrame, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		broken := false
		for f := range frames {
			if broken {
				continue
			}
			_ = rc.SetWriteDeadline(time.Now().Add(frameTimeout))
			err := enc.Encode(f)
			if err == nil {
				err = rc.Flush()
			}
			if err != nil {
				broken = true
				s.log.Warn("deploy stream: the client does not take its frames; the rollout goes on without it", "path", r.URL.Path, "err", err)
			}
		}
	}()
	_ = rc.SetWriteDeadline(time.Now().Add(frameTimeout))
	_ = rc.Flush()
	dropped := 0
	rev, err := run(func(p deploy.Progress) {
		select {
		case frames <- DeployFrame{Progress: &p}:
		default:
			dropped++
		}
	})
	if dropped > 0 {
		s.log.Warn("deploy stream: progress frames left out for a slow client", "path", r.URL.Path, "dropped", dropped)
	}
	f := DeployFrame{}
	if rev.Number > 0 {
		f.Revision = &rev
	}
	if err != nil {
		f.Error, _ = toError(err)
		if f.Error.Kind == KindInternal {
			s.log.Warn("deploy failed", "path", r.URL.Path, "err", err)
		}
	}
	frames <- f
	close(frames)
	<-done
}

// Deploy rolls req.Service out to req.Spec on the daemon, calling
// progress per step; it returns the revision (recorded, also when the
// rollout failed) and the rollout's error.
func (c *Client) Deploy(ctx context.Context, req deploy.Request, progress func(deploy.Progress)) (deploy.Revision, error) {
	return c.deployCall(ctx, http.MethodPost, "/v1/deployments/"+url.PathEscape(req.Service), req, progress)
}

// Rollback deploys an earlier revision of req.Service again.
func (c *Client) Rollback(ctx context.Context, req deploy.RollbackRequest, progress func(deploy.Progress)) (deploy.Revision, error) {
	return c.deployCall(ctx, http.MethodPost, "/v1/deployments/"+url.PathEscape(req.Service)+"/rollback", req, progress)
}

// Undeploy removes a deployed service on the daemon (its containers
// drained, stopped and removed), calling progress per step.
func (c *Client) Undeploy(ctx context.Context, service string, progress func(deploy.Progress)) (deploy.Revision, error) {
	return c.deployCall(ctx, http.MethodDelete, "/v1/deployments/"+url.PathEscape(service), nil, progress)
}

// History lists the revisions of service, oldest first.
func (c *Client) History(ctx context.Context, service string) ([]deploy.Revision, error) {
	var out []deploy.Revision
	err := c.call(ctx, http.MethodGet, "/v1/deployments/"+url.PathEscape(service), nil, nil, &out)
	return out, err
}

func (c *Client) deployCall(ctx context.Context, method, path string, body any, progress func(deploy.Progress)) (deploy.Revision, error) {
	resp, err := c.do(ctx, method, path, nil, body)
	if err != nil {
		return deploy.Revision{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var f DeployFrame
		if err := dec.Decode(&f); err != nil {
			if ctx.Err() != nil {
				return deploy.Revision{}, ctx.Err()
			}
			return deploy.Revision{}, errors.New("berth daemon: the deploy stream ended without an outcome: " + err.Error())
		}
		if f.Progress != nil {
			if progress != nil {
				progress(*f.Progress)
			}
			continue
		}
		var rev deploy.Revision
		if f.Revision != nil {
			rev = *f.Revision
		}
		if f.Error != nil {
			return rev, f.Error
		}
		return rev, nil
	}
}

// NewDeployServer serves the deploy endpoints (and GET /v1/_ping) alone:
// the berth API of a daemon whose containers are a Docker Engine's.
func NewDeployServer(d Deployer, opts ...ServerOption) *Server {
	s := &Server{log: slog.Default(), mux: http.NewServeMux()}
	for _, o := range opts {
		o(s)
	}
	s.mux.HandleFunc("GET /v1/_ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "OK") })
	WithDeploys(d)(s)
	return s
}
