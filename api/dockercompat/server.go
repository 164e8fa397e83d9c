package dockercompat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/runtime/embedded/network"
)

// API versions served: requests may name any version in this range in a
// /vX.Y/ prefix; an unversioned path is served as APIVersion.
const (
	APIVersion    = "1.51"
	MinAPIVersion = "1.24"
)

// DefaultSocket is where berth up serves the API unless told otherwise.
const DefaultSocket = "/run/berth/docker.sock"

// Backend is what a Server drives: the daemon API's Backend (containers
// through runtime.Engine, and the embedded runtime's image store) with the
// embedded runtime's bridge network and state directory.
// *embedded.Runtime implements it.
type Backend interface {
	api.Backend
	Network() *network.Manager
	StateDir() string
}

// Server serves the Docker Engine API subset for an embedded runtime.
type Server struct {
	rt      Backend
	log     *slog.Logger
	version string
	mux     *http.ServeMux
	hub     *hub
	started time.Time

	mu       sync.Mutex
	unknown  map[string]bool       // unsupported endpoints already logged
	execs    map[string]*execState // exec instances by id
	autoRm   map[string]bool       // containers created with AutoRemove
	attached map[string]int        // open attach streams per container
	tty      map[string]bool       // containers created with a TTY (they run without one)
	serveRan bool
}

// Option configures NewServer.
type Option func(*Server)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithVersion sets the version berth reports as the engine version
// (default "dev").
func WithVersion(v string) Option { return func(s *Server) { s.version = v } }

// NewServer returns a server for rt. Serve starts it.
func NewServer(rt Backend, opts ...Option) *Server {
	s := &Server{
		rt: rt, log: slog.Default(), version: "dev", started: time.Now().UTC(),
		unknown: map[string]bool{}, execs: map[string]*execState{}, autoRm: map[string]bool{},
		attached: map[string]int{}, tty: map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	s.hub = newHub(s.log)
	s.routes()
	return s
}

// Listen creates the unix socket at path (mode 0660, parent directory
// created), replacing a stale socket file but refusing one a live daemon
// listens on.
func Listen(path string) (net.Listener, error) { return api.Listen(path) }

// Serve serves the API on ln until ctx ends, then cuts open streams
// (events, logs, wait) and returns. It follows the runtime's events from
// the start, so events since then can be replayed (since/until). A
// Server serves once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.serveRan {
		s.mu.Unlock()
		return errors.New("dockercompat: Serve called twice")
	}
	s.serveRan = true
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hubDone := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(hubDone)
		s.hub.run(ctx, s.rt, ready, s.onEvent)
	}()
	<-ready // subscribed: nothing after this point is missed
	hs := &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
		cancel()
	case <-ctx.Done():
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = hs.Shutdown(sctx)
		scancel()
		_ = hs.Close()
		<-errc
	}
	<-hubDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// versionPrefix matches dockerd's optional /vX.Y path prefix.
var versionPrefix = regexp.MustCompile(`^/v([0-9.]+)(/.*)$`)

type ctxKey struct{}

// reqVersion is the API version a request was made with.
func reqVersion(r *http.Request) apiVersion {
	if v, ok := r.Context().Value(ctxKey{}).(apiVersion); ok {
		return v
	}
	return mustVersion(APIVersion)
}

// serveHTTP strips and checks the API version, sets dockerd's headers and
// routes the request.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Api-Version", APIVersion)
	h.Set("Ostype", "linux")
	h.Set("Server", "berth/"+s.version+" (linux)")
	h.Set("Docker-Experimental", "false")
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("docker API: handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("internal error: %v", p))
		}
	}()
	ver := mustVersion(APIVersion)
	if m := versionPrefix.FindStringSubmatch(r.URL.Path); m != nil {
		v, ok := parseVersion(m[1])
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid API version %q", m[1]))
			return
		}
		if v.less(mustVersion(MinAPIVersion)) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", m[1], MinAPIVersion))
			return
		}
		if mustVersion(APIVersion).less(v) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("client version %s is too new. Maximum supported API version is %s", m[1], APIVersion))
			return
		}
		ver = v
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = m[2]
		u.RawPath = ""
		r2.URL = &u
		r = r2
	}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ver))
	s.mux.ServeHTTP(w, r)
	s.log.Debug("docker API request", "method", r.Method, "path", r.URL.Path, "version", ver.String(), "took", time.Since(start))
}

// notFound answers an endpoint berth does not serve the way dockerd
// answers an unknown route, logging each method and path once.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	// One log line per endpoint, not per container or image named in it.
	segs := strings.Split(r.URL.Path, "/")
	if len(segs) > 3 {
		segs[2] = "{x}"
	}
	key := r.Method + " " + strings.Join(segs, "/")
	s.mu.Lock()
	first := !s.unknown[key] && len(s.unknown) < 1000
	if first {
		s.unknown[key] = true
	}
	s.mu.Unlock()
	if first {
		s.log.Warn("docker API: unsupported endpoint (answered 404; logged once)", "endpoint", key, "path", r.URL.Path, "user_agent", r.UserAgent())
	}
	writeError(w, http.StatusNotFound, "page not found")
}

// apiError is an error with the HTTP status dockerd answers it with.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) error {
	return errorf(http.StatusBadRequest, format, args...)
}

// writeError writes dockerd's error body.
func writeError(w http.ResponseWriter, status int, msg string) {
	api.WriteJSON(w, status, map[string]string{"message": msg})
}

// fail answers err: an apiError with its status, a runtime error mapped by
// its sentinel, anything else as a 500 (logged).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := statusOf(err)
	if status >= 500 {
		s.log.Error("docker API: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, msg)
}

// handler adapts a function returning an error to an http.HandlerFunc.
func (s *Server) handler(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			s.fail(w, r, err)
		}
	}
}

// decodeBody decodes a JSON request body into v; an empty body leaves v
// as it is when allowEmpty.
func decodeBody(r *http.Request, v any, allowEmpty bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 16<<20))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) && allowEmpty {
			return nil
		}
		if errors.Is(err, io.EOF) {
			return badRequest("invalid JSON: the request body is empty")
		}
		return badRequest("invalid JSON in the request body: %v", err)
	}
	return nil
}

// boolValue is dockerd's httputils.BoolValue.
func boolValue(r *http.Request, k string) bool {
	switch strings.ToLower(strings.TrimSpace(r.URL.Query().Get(k))) {
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}

// intValue parses an integer query parameter; def when absent.
func intValue(r *http.Request, k string, def int) (int, error) {
	v := r.URL.Query().Get(k)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, badRequest("invalid value for %s: %q is not an integer", k, v)
	}
	return n, nil
}

// flush sends what is buffered to the client now.
func flush(w http.ResponseWriter) {
	_ = http.NewResponseController(w).Flush()
}
