package status

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

//go:embed page.html
var page []byte

// Defaults of a Server.
const (
	// DefaultRefresh is how often connected pages get a fresh view when
	// nothing changed (ages, health).
	DefaultRefresh = 2 * time.Second
	// minGap is the least time between two views sent: a burst of store
	// events is one update.
	minGap = 100 * time.Millisecond
	// keepAlive is how often an idle event stream gets a comment, so that
	// proxies in between do not close it.
	keepAlive = 15 * time.Second
)

// Gather returns the input of the current view. It is called from the
// server's goroutines and must honour ctx.
type Gather func(ctx context.Context) Input

// Auth is who may read the status page and API. With a Token, a request
// must carry "Authorization: Bearer TOKEN", or basic auth with the token as
// the password (any user name: that is how a browser sends it); with a
// User, basic auth with User and Password. Zero: no authentication.
type Auth struct {
	User, Password string
	Token          string
}

// Enabled reports whether a, applied, asks for credentials.
func (a Auth) Enabled() bool { return a.Token != "" || a.User != "" }

// allows reports whether r carries a's credentials.
func (a Auth) allows(r *http.Request) bool {
	if !a.Enabled() {
		return true
	}
	eq := func(x, y string) bool { return y != "" && subtle.ConstantTimeCompare([]byte(x), []byte(y)) == 1 }
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && eq(tok, a.Token) {
		return true
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	userOK := eq(user, a.User)
	return eq(pass, a.Token) || a.User != "" && userOK && eq(pass, a.Password)
}

// Option configures a Server.
type Option func(*Server)

// WithAuth requires a's credentials on every request.
func WithAuth(a Auth) Option { return func(s *Server) { s.auth = a } }

// WithTriggers sets channels whose values mean the view may have changed
// (a store mirror's notifications, Renders.Changed); the server is their
// only reader.
func WithTriggers(chs ...<-chan struct{}) Option {
	return func(s *Server) { s.triggers = append(s.triggers, chs...) }
}

// WithRefresh sets how often connected pages get a view when nothing
// triggered one (default DefaultRefresh).
func WithRefresh(d time.Duration) Option { return func(s *Server) { s.refresh = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// Server serves the status page, its JSON API and its event stream. Run
// feeds the event streams; the handler works without it, but streams
// then get only their first view.
type Server struct {
	gather   Gather
	auth     Auth
	triggers []<-chan struct{}
	refresh  time.Duration
	log      *slog.Logger
	csp      string

	mu   sync.Mutex
	subs map[chan []byte]struct{}
}

// NewServer returns a server of the views gather's input makes.
func NewServer(gather Gather, opts ...Option) *Server {
	s := &Server{gather: gather, refresh: DefaultRefresh, log: slog.Default(), subs: map[chan []byte]struct{}{}}
	for _, o := range opts {
		o(s)
	}
	s.csp = contentPolicy(page)
	return s
}

// contentPolicy allows the page's own inline script and style (by hash)
// and connections to its own origin, nothing else.
func contentPolicy(html []byte) string {
	hash := func(tag string) string {
		m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindSubmatch(html)
		if m == nil {
			return "'none'"
		}
		sum := sha256.Sum256(m[1])
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return "default-src 'none'; script-src " + hash("script") + "; style-src " + hash("style") +
		"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// Handler serves, read-only (GET and HEAD only):
//
//	/                    the status page (HTML)
//	/api/v1/status       the whole View (JSON)
//	/api/v1/services     View.Services
//	/api/v1/containers   View.Containers
//	/api/v1/hosts        View.Hosts
//	/api/v1/templates    View.Templates
//	/api/v1/store        View.Store
//	/api/v1/health       View.Health
//	/api/v1/cluster      View.Cluster (null without a cluster)
//	/api/v1/deploys      View.Deploys
//	/api/v1/events       server-sent events: "status" events whose data
//	                     is the whole View, on every change
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /api/v1/events", s.events)
	parts := map[string]func(View) any{
		"status":     func(v View) any { return v },
		"services":   func(v View) any { return v.Services },
		"containers": func(v View) any { return v.Containers },
		"hosts":      func(v View) any { return v.Hosts },
		"templates":  func(v View) any { return v.Templates },
		"store":      func(v View) any { return v.Store },
		"health":     func(v View) any { return v.Health },
		"cluster":    func(v View) any { return v.Cluster },
		"deploys":    func(v View) any { return v.Deploys },
	}
	for name, part := range parts {
		mux.HandleFunc("GET /api/v1/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(part(Build(s.gather(r.Context()))))
		})
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "the status API is read-only", http.StatusMethodNotAllowed)
			return
		}
		http.Error(w, "no such view; see /api/v1/status", http.StatusNotFound)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if !s.auth.allows(r) {
			h.Set("WWW-Authenticate", `Basic realm="berth status", charset="UTF-8"`)
			http.Error(w, "credentials required (see [daemon.status] in the configuration)", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.csp)
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(page)
}

// events streams a "status" event with the whole view after every change.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	ch := s.subscribe()
	defer s.unsubscribe(ch)
	// The first view at once, from this request: the stream is never
	// empty, even without Run.
	if err := writeEvent(w, s.marshal(r.Context())); err != nil {
		return
	}
	fl.Flush()
	ka := time.NewTicker(keepAlive)
	defer ka.Stop()
	for {
		select {
		case b := <-ch:
			if err := writeEvent(w, b); err != nil {
				return
			}
		case <-ka.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
		fl.Flush()
	}
}

func writeEvent(w http.ResponseWriter, data []byte) error {
	// json.Marshal output has no newline: one data line.
	_, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", data)
	return err
}

func (s *Server) marshal(ctx context.Context) []byte {
	b, err := json.Marshal(Build(s.gather(ctx)))
	if err != nil { // cannot happen for a View; say so rather than send nothing
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return b
}

func (s *Server) subscribe() chan []byte {
	ch := make(chan []byte, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch
}

func (s *Server) unsubscribe(ch chan []byte) {
	s.mu.Lock()
	delete(s.subs, ch)
	s.mu.Unlock()
}

// broadcast hands b to every stream, replacing a view it has not sent
// yet: a slow page skips views, it never holds the others back.
func (s *Server) broadcast(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case <-ch:
		default:
		}
		ch <- b
	}
}

func (s *Server) listeners() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Run feeds the event streams until ctx ends: after a trigger (at most
// one view per 100ms) and every refresh interval, while any is connected.
func (s *Server) Run(ctx context.Context) {
	wake := make(chan struct{}, 1)
	for _, t := range s.triggers {
		go func() {
			for {
				select {
				case _, ok := <-t:
					if !ok {
						return
					}
					select {
					case wake <- struct{}{}:
					default:
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	tick := time.NewTicker(s.refresh)
	defer tick.Stop()
	var last time.Time
	var sent []byte
	for {
		forced := false
		select {
		case <-wake:
		case <-tick.C:
			forced = true
		case <-ctx.Done():
			return
		}
		if s.listeners() == 0 {
			continue
		}
		if gap := time.Until(last.Add(minGap)); gap > 0 {
			select {
			case <-time.After(gap):
			case <-ctx.Done():
				return
			}
		}
		last = time.Now()
		b := s.marshal(ctx)
		if !forced && sameView(b, sent) {
			continue
		}
		sent = b
		s.broadcast(b)
	}
}

// sameView reports whether two marshalled views differ only in their
// generation time.
func sameView(a, b []byte) bool {
	strip := func(x []byte) []byte {
		// "generated" is the first field: cut up to the second field.
		if i := bytes.Index(x, []byte(`,"host":`)); i > 0 {
			return x[i:]
		}
		return x
	}
	return b != nil && bytes.Equal(strip(a), strip(b))
}
