package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/image"
)

// Backend is what the API serves: a runtime.Engine with the embedded
// runtime's image store.
type Backend interface {
	runtime.Engine
	ImageInUse(id string) bool
	Images() *image.Store
}

// Server serves a Backend over HTTP.
type Server struct {
	b    Backend
	log  *slog.Logger
	mux  *http.ServeMux
	info *Info // nil: from the backend
}

// ServerOption configures NewServer.
type ServerOption func(*Server)

// WithServerLogger sets the request error logger (default slog.Default()).
func WithServerLogger(l *slog.Logger) ServerOption { return func(s *Server) { s.log = l } }

// NewServer returns the API handler for b.
func NewServer(b Backend, opts ...ServerOption) *Server {
	s := &Server{b: b, log: slog.Default(), mux: http.NewServeMux()}
	for _, o := range opts {
		o(s)
	}
	m := s.mux
	m.HandleFunc("GET /v1/_ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "OK") })
	m.HandleFunc("GET /v1/info", s.infoHandler)
	m.HandleFunc("POST /v1/containers", s.run)
	m.HandleFunc("GET /v1/containers", s.list)
	m.HandleFunc("GET /v1/containers/{id}", s.inspect)
	m.HandleFunc("POST /v1/containers/{id}/start", s.simple(func(ctx context.Context, r *http.Request, id string) error { return s.b.Start(ctx, id) }))
	m.HandleFunc("POST /v1/containers/{id}/stop", s.simple(func(ctx context.Context, r *http.Request, id string) error {
		return s.b.Stop(ctx, id, grace(r))
	}))
	m.HandleFunc("POST /v1/containers/{id}/restart", s.simple(func(ctx context.Context, r *http.Request, id string) error {
		return s.b.Restart(ctx, id, grace(r))
	}))
	m.HandleFunc("POST /v1/containers/{id}/kill", s.simple(func(ctx context.Context, r *http.Request, id string) error {
		sig, err := runtime.ParseSignal(r.URL.Query().Get("signal"))
		if err != nil {
			return err
		}
		return s.b.Kill(ctx, id, sig)
	}))
	m.HandleFunc("DELETE /v1/containers/{id}", s.simple(func(ctx context.Context, r *http.Request, id string) error {
		var opts []runtime.RemoveOption
		if r.URL.Query().Get("force") == "1" {
			opts = append(opts, runtime.Force())
		}
		return s.b.Remove(ctx, id, opts...)
	}))
	m.HandleFunc("GET /v1/containers/{id}/logs", s.logs)
	m.HandleFunc("POST /v1/containers/{id}/exec", s.exec)
	m.HandleFunc("GET /v1/events", s.events)
	m.HandleFunc("GET /v1/images", s.images)
	m.HandleFunc("POST /v1/images/pull", s.pull)
	m.HandleFunc("POST /v1/images/load", s.load)
	m.HandleFunc("POST /v1/images/import", s.importImage)
	m.HandleFunc("DELETE /v1/images", s.removeImage)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Listen creates the unix socket at path (mode 0660, parent dir created),
// replacing a stale socket file.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: another daemon is listening", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}

// Serve serves the API on ln until ctx ends, then shuts down (streams are
// cut) and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, BaseContext: func(net.Listener) context.Context { return ctx }, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-errc
		return nil
	}
}

func grace(r *http.Request) time.Duration {
	if t, err := strconv.Atoi(r.URL.Query().Get("t")); err == nil && t >= 0 {
		return time.Duration(t) * time.Second
	}
	return 10 * time.Second
}

// WriteJSON answers status with v as a JSON body, as this API does
// (api/dockercompat answers the same way).
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ae, status := toError(err)
	if status == http.StatusInternalServerError {
		s.log.Warn("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, ae)
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		return runtime.Errorf(runtime.ErrInvalid, "request body: %w", err)
	}
	return nil
}

func (s *Server) simple(fn func(ctx context.Context, r *http.Request, id string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(r.Context(), r, r.PathValue("id")); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	var spec runtime.Spec
	if err := decode(r, &spec); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.b.Run(r.Context(), spec)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

// list returns containers; all=1 includes stopped ones; each label=k=v
// (or label=k) must match.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	cs, err := s.b.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	out := []runtime.Container{}
	for _, c := range cs {
		if q.Get("all") != "1" && c.State != runtime.StateRunning && c.State != runtime.StateRestarting {
			continue
		}
		if matchLabels(c.Labels, q["label"]) {
			out = append(out, c)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func matchLabels(labels map[string]string, filters []string) bool {
	for _, f := range filters {
		k, v, hasV := strings.Cut(f, "=")
		got, ok := labels[k]
		if !ok || hasV && got != v {
			return false
		}
	}
	return true
}

func (s *Server) inspect(w http.ResponseWriter, r *http.Request) {
	c, err := s.b.Inspect(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// stream writes frames as NDJSON, flushing each.
type stream struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	enc *json.Encoder
	fl  http.Flusher
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	st := &stream{w: w, enc: json.NewEncoder(w), fl: fl}
	if fl != nil {
		fl.Flush()
	}
	return st
}

func (st *stream) send(f Frame) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.enc.Encode(f); err != nil {
		return err
	}
	if st.fl != nil {
		st.fl.Flush()
	}
	return nil
}

func (st *stream) fail(err error) {
	ae, _ := toError(err)
	_ = st.send(Frame{Error: ae})
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.b.Inspect(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	tail, _ := strconv.Atoi(q.Get("tail"))
	st := newStream(w)
	err := s.b.Logs(r.Context(), id, runtime.LogOptions{Follow: q.Get("follow") == "1", Tail: tail}, func(l runtime.LogLine) error {
		return st.send(Frame{Log: &l})
	})
	if err != nil && r.Context().Err() == nil {
		st.fail(err)
	}
}

// frameWriter turns exec output into output frames.
type frameWriter struct {
	st     *stream
	stream string
}

func (fw frameWriter) Write(p []byte) (int, error) {
	return len(p), fw.st.send(Frame{Output: &Output{Stream: fw.stream, Data: p}})
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(r.Body)
	var req ExecRequest
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, runtime.Errorf(runtime.ErrInvalid, "request body: %w", err))
		return
	}
	id := r.PathValue("id")
	if c, err := s.b.Inspect(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	} else if c.State != runtime.StateRunning {
		s.fail(w, r, runtime.Errorf(runtime.ErrConflict, "container %s is not running", id))
		return
	}
	opts := runtime.ExecOptions{Cmd: req.Cmd, Env: req.Env, TTY: req.TTY, Size: req.Size}
	if req.Stdin || req.TTY {
		// Input arrives in the body while the output streams back.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			s.fail(w, r, fmt.Errorf("exec with stdin or a terminal: %w", err))
			return
		}
		in, resize := execInput(dec, req.Stdin)
		defer in.Close()
		opts.Resize = resize
		if req.Stdin {
			opts.Stdin = in
		}
	}
	st := newStream(w)
	opts.Stdout, opts.Stderr = frameWriter{st, "stdout"}, frameWriter{st, "stderr"}
	code, err := s.b.Exec(r.Context(), id, opts)
	if err != nil {
		st.fail(err)
		return
	}
	_ = st.send(Frame{ExitCode: &code})
}

// execInput reads the ExecInput values of an exec body: their stdin
// bytes come out of the returned reader (which ends with the body or a
// CloseStdin; closing it stops the copy), their resizes out of the
// channel (the latest kept when the command is slow to take them).
func execInput(dec *json.Decoder, stdin bool) (*io.PipeReader, <-chan runtime.TermSize) {
	pr, pw := io.Pipe()
	resize := make(chan runtime.TermSize, 1)
	go func() {
		defer pw.Close()
		for {
			var in ExecInput
			if err := dec.Decode(&in); err != nil {
				return
			}
			if in.Resize != nil {
				select {
				case <-resize: // drop a stale size
				default:
				}
				resize <- *in.Resize
			}
			if len(in.Stdin) > 0 && stdin {
				if _, err := pw.Write(in.Stdin); err != nil {
					return
				}
			}
			if in.CloseStdin {
				pw.Close()
			}
		}
	}()
	return pr, resize
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	events, errc := s.b.Events(r.Context())
	st := newStream(w)
	for ev := range events {
		if err := st.send(Frame{Event: &ev}); err != nil {
			return
		}
	}
	if err := <-errc; err != nil {
		st.fail(err)
	}
}

func (s *Server) images(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.b.Images().List()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, imgs)
}

func (s *Server) pull(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		s.fail(w, r, runtime.Errorf(runtime.ErrInvalid, "pull: no ref"))
		return
	}
	st := newStream(w)
	img, err := s.b.Images().Pull(r.Context(), ref, func(p image.Progress) { _ = st.send(Frame{Progress: &p}) })
	if err != nil {
		st.fail(err)
		return
	}
	_ = st.send(Frame{Image: &img})
}

// load stores the images of the docker save tarball that is the request
// body.
func (s *Server) load(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.b.Images().LoadReader(r.Context(), r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, imgs)
}

// importImage stores the root filesystem tar that is the request body as
// the image named by ?tag=.
func (s *Server) importImage(w http.ResponseWriter, r *http.Request) {
	tag := r.URL.Query().Get("tag")
	if tag == "" {
		s.fail(w, r, runtime.Errorf(runtime.ErrInvalid, "import: no tag"))
		return
	}
	img, err := s.b.Images().ImportReader(r.Context(), r.Body, tag)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, img)
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	did, err := s.b.Images().Remove(q.Get("ref"), q.Get("force") == "1", s.b.ImageInUse)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, did)
}
