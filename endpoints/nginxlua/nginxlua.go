package nginxlua

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/internal/atomicfile"
	"github.com/berthd/berth/templates"
)

// The files in a Sink's directory; the template names the same ones.
const (
	SocketFile = "endpoints.sock" // nginx listens here (the push endpoint)
	StateFile  = "endpoints"      // the last set, whole, for init_by_lua
	ModuleFile = "berth_live.lua" // the Lua module (package path: the directory)
)

// ModuleDir is where Debian's libnginx-mod-http-lua installs nginx's Lua
// module (and the development kit it needs).
const ModuleDir = "/usr/lib/nginx/modules"

// CheckModule reports whether nginx's Lua module is installed in dir
// (ModuleDir if empty), naming the Debian package when it is not.
func CheckModule(dir string) error {
	if dir == "" {
		dir = ModuleDir
	}
	for _, f := range []string{"ndk_http_module.so", "ngx_http_lua_module.so"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("nginx's Lua module is not installed (%s): install Debian's libnginx-mod-http-lua and lua-resty-core (apt-get install libnginx-mod-http-lua lua-resty-core)", filepath.Join(dir, f))
		}
	}
	return nil
}

// Sink pushes endpoint sets to the nginx that serves nginx-lua.tmpl's
// rendering with the same directory. It implements endpoints.Sink.
type Sink struct {
	dir     string
	log     *slog.Logger
	timeout time.Duration
	client  *http.Client
	gen     string // this sink's generation token

	mu       sync.Mutex
	applied  map[string]string // upstream → its encoded servers, as nginx holds them; nil: unknown
	saved    []byte            // the state file as last written
	restarts int               // pushes that found another generation in nginx
}

// Option configures a Sink.
type Option func(*Sink)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Sink) { s.log = l } }

// WithTimeout bounds one push (default 10s); a push that times out
// reports endpoints.ErrUnavailable.
func WithTimeout(d time.Duration) Option { return func(s *Sink) { s.timeout = d } }

// New prepares dir (created with mode 0700, or narrowed to it) and writes
// the Lua module there. It does not talk to nginx: Push does.
func New(dir string, opts ...Option) (*Sink, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("live directory %q: not an absolute path", dir)
	}
	var tok [12]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, err
	}
	s := &Sink{dir: filepath.Clean(dir), log: slog.Default(), timeout: 10 * time.Second, gen: hex.EncodeToString(tok[:])}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("live directory: %w", err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil { // only berth may reach the socket
		return nil, fmt.Errorf("live directory: %w", err)
	}
	mod, err := fs.ReadFile(templates.Files(), ModuleFile)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(s.dir, ModuleFile), mod, 0o644); err != nil {
		return nil, err
	}
	s.removeStaleSocket()
	sock := filepath.Join(s.dir, SocketFile)
	s.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns: 1, IdleConnTimeout: 30 * time.Second,
	}}
	return s, nil
}

// Dir is the sink's directory.
func (s *Sink) Dir() string { return s.dir }

// removeStaleSocket removes a socket file no nginx listens on (left by a
// killed nginx), so that the next nginx can bind it.
func (s *Sink) removeStaleSocket() {
	sock := filepath.Join(s.dir, SocketFile)
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != fs.ModeSocket {
		return
	}
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err == nil {
		c.Close()
		return
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(sock)
	}
}

// Push applies set to nginx: the state file first (whole), then the
// upstreams that differ from what nginx holds, or the whole set when nginx
// holds another generation (409 from the Lua). It returns an error
// wrapping endpoints.ErrUnavailable when nginx cannot be reached, and an
// error naming nginx's reason when the Lua refuses the push.
func (s *Sink) Push(ctx context.Context, set endpoints.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]string, len(set.Upstreams))
	for _, u := range set.Upstreams {
		want[u.Name] = encodeServers(u.Servers)
	}
	full := s.body(set, want, nil)
	if !bytes.Equal(full, s.saved) {
		// Before the push, so that an nginx restarting meanwhile reads it;
		// not fsynced (milliseconds on every push): after a power loss
		// berth starts again too, and pushes the whole set.
		if err := atomicfile.WriteUnsynced(filepath.Join(s.dir, StateFile), full, 0o600); err != nil {
			return fmt.Errorf("nginx-lua: state file: %w", err)
		}
		s.saved = full
	}
	if s.applied != nil {
		code, msg, err := s.post(ctx, s.body(set, want, s.applied))
		switch {
		case err != nil:
			return err
		case code == http.StatusOK:
			s.applied = want
			return nil
		case code != http.StatusConflict:
			return fmt.Errorf("nginx-lua: push refused: %d %s", code, msg)
		}
		s.restarts++
		s.log.Info("nginx holds another endpoint generation (restarted or reloaded without the state file); pushing the whole set", "dir", s.dir, "nginx_generation", msg)
	}
	code, msg, err := s.post(ctx, full)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		s.applied = nil
		return fmt.Errorf("nginx-lua: push refused: %d %s", code, msg)
	}
	s.applied = want
	return nil
}

// Restarts is how many pushes found nginx holding another generation.
func (s *Sink) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// body is a push: the whole set when prev is nil, else what changed from
// prev (possibly nothing: then it only checks the generation).
func (s *Sink) body(set endpoints.Set, want, prev map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString("gen " + s.gen + "\n")
	if prev == nil {
		b.WriteString("full\n")
	}
	for _, u := range set.Upstreams {
		if enc, ok := prev[u.Name]; ok && enc == want[u.Name] {
			continue
		}
		b.WriteString("u " + u.Name)
		if enc := want[u.Name]; enc != "" {
			b.WriteString(" " + enc)
		}
		b.WriteByte('\n')
	}
	for name := range prev {
		if _, ok := want[name]; !ok {
			b.WriteString("d " + name + "\n")
		}
	}
	return b.Bytes()
}

// encodeServers is one upstream's value in the dict: "host port weight
// draining" joined by ",", IPv6 hosts in brackets (nginx parses them so).
func encodeServers(servers []endpoints.Server) string {
	parts := make([]string, len(servers))
	for i, sv := range servers {
		host := sv.Addr.Addr().String()
		if sv.Addr.Addr().Is6() {
			host = "[" + host + "]"
		}
		d := "0"
		if sv.Draining {
			d = "1"
		}
		parts[i] = host + " " + strconv.Itoa(int(sv.Addr.Port())) + " " + strconv.Itoa(max(sv.Weight, 1)) + " " + d
	}
	return strings.Join(parts, ",")
}

func (s *Sink) post(ctx context.Context, body []byte) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://berth-live/endpoints", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("nginx-lua: %s: %w: %w", filepath.Join(s.dir, SocketFile), endpoints.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, "", fmt.Errorf("nginx-lua: %w: reading the answer: %w", endpoints.ErrUnavailable, err)
	}
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusInsufficientStorage && resp.StatusCode != http.StatusInternalServerError {
		// 502/503/504: something in front of the Lua is not up
		return 0, "", fmt.Errorf("nginx-lua: %w: %d %s", endpoints.ErrUnavailable, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return resp.StatusCode, strings.TrimSpace(string(msg)), nil
}
