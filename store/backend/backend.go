package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/consul"
	"github.com/berthd/berth/store/env"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/store/file"
)

// ErrBadURL marks an error in the store URL itself (as opposed to a store
// that cannot be reached).
var ErrBadURL = errors.New("bad store URL")

// Options are the settings a URL does not carry.
type Options struct {
	CAFile, CertFile, KeyFile string // TLS to etcd or Consul
	Username, Password        string // etcd authentication
	Token                     string // Consul ACL token
	Logger                    *slog.Logger
	StateDir                  string // where the default embedded store lives
	MustExist                 bool   // never create an embedded store
	JoinOnly                  bool   // never serve an embedded store
	Group                     string // may use the embedded store served here
}

// Option sets one of Options.
type Option func(*Options)

// WithTLS configures TLS files (any may be empty).
func WithTLS(caFile, certFile, keyFile string) Option {
	return func(o *Options) { o.CAFile, o.CertFile, o.KeyFile = caFile, certFile, keyFile }
}

// WithCredentials sets an etcd username and password.
func WithCredentials(username, password string) Option {
	return func(o *Options) { o.Username, o.Password = username, password }
}

// WithToken sets a Consul ACL token.
func WithToken(token string) Option { return func(o *Options) { o.Token = token } }

// WithLogger sets the logger of the store.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// WithStateDir sets the state directory whose "store" subdirectory holds the
// default embedded store.
func WithStateDir(dir string) Option { return func(o *Options) { o.StateDir = dir } }

// WithMustExist opens an embedded store only if it exists (a process
// serves it, or it is on disk): a missing one is etcd.ErrNoStore instead
// of a new, empty store.
func WithMustExist() Option { return func(o *Options) { o.MustExist = true } }

// WithJoinOnly opens an embedded store only if another process serves it:
// one that no process serves is etcd.ErrNotServed instead of a server
// running for as long as this store is open.
func WithJoinOnly() Option { return func(o *Options) { o.JoinOnly = true } }

// WithGroup lets a group (name or id) use the embedded store when this
// process serves it (etcd.EmbeddedConfig.Group).
func WithGroup(group string) Option { return func(o *Options) { o.Group = group } }

// DefaultStateDir is berth's state directory: /var/lib/berth for root,
// else $XDG_STATE_HOME/berth (~/.local/state/berth).
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/berth"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "berth")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "berth")
	}
	return filepath.Join(os.TempDir(), "berth")
}

// Open opens the store rawURL names; an empty rawURL is the embedded store
// under the state directory.
func Open(ctx context.Context, rawURL string, opts ...Option) (store.Store, error) {
	var o Options
	for _, f := range opts {
		f(&o)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir()
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrBadURL, rawURL, fmt.Sprintf(format, args...))
	}
	const schemes = "embedded://, etcd://, consul://, file:// or env://"
	if rawURL == "" {
		return etcd.Embedded(ctx, etcd.EmbeddedConfig{Dir: filepath.Join(o.StateDir, "store"), MustExist: o.MustExist, JoinOnly: o.JoinOnly, Group: o.Group, Logger: o.Logger})
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, bad("%v; a store URL starts with %s", err, schemes)
	}
	switch u.Scheme {
	case "embedded":
		if u.Host != "" {
			return nil, bad("embedded takes a path (embedded:///var/lib/berth/store), not a host %q", u.Host)
		}
		if u.Path == "" || u.Path == "/" {
			return nil, bad("no path; name the store's directory (embedded:///var/lib/berth/store), or give no store URL for the one under the state directory")
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, bad("embedded takes only a path")
		}
		return etcd.Embedded(ctx, etcd.EmbeddedConfig{Dir: u.Path, MustExist: o.MustExist, JoinOnly: o.JoinOnly, Group: o.Group, Logger: o.Logger})
	case "etcd", "etcds":
		endpoints, err := hostList(u)
		if err != nil {
			return nil, bad("%v", err)
		}
		cfg := etcd.Config{
			Endpoints: endpoints, Username: o.Username, Password: o.Password,
			CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile,
			Logger: o.Logger,
		}
		if u.User != nil {
			cfg.Username = u.User.Username()
			cfg.Password, _ = u.User.Password()
		}
		if u.Scheme == "etcds" {
			for i, ep := range cfg.Endpoints {
				cfg.Endpoints[i] = "https://" + ep
			}
		}
		return etcd.New(ctx, cfg)
	case "consul", "consuls":
		if u.Host == "" || (u.Path != "" && u.Path != "/") || strings.Contains(u.Host, ",") {
			return nil, bad("consul takes one agent address (consul://127.0.0.1:8500)")
		}
		if !strings.Contains(u.Host, ":") {
			return nil, bad("host %q has no port", u.Host)
		}
		cfg := consul.Config{
			Address: u.Host, Scheme: "http", Token: o.Token,
			CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile,
			Logger: o.Logger,
		}
		if u.Scheme == "consuls" {
			cfg.Scheme = "https"
		}
		return consul.New(ctx, cfg)
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, bad("file takes a path (file:///etc/berth/values.yaml), not a host %q", u.Host)
		}
		if u.Path == "" {
			return nil, bad("no path")
		}
		return file.New(ctx, u.Path, o.Logger)
	case "env":
		if u.Host != "" || (u.Path != "" && u.Path != "/") {
			return nil, bad("env takes nothing after the scheme (env://)")
		}
		return env.New(os.Environ()), nil
	case "":
		return nil, bad("no scheme; use %s", schemes)
	}
	return nil, bad("unknown scheme %q; use %s", u.Scheme, schemes)
}

// hostList splits the comma-separated host:port list of a URL.
func hostList(u *url.URL) ([]string, error) {
	if u.Host == "" {
		return nil, errors.New("no host:port")
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("unexpected path %q", u.Path)
	}
	var hosts []string
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return nil, errors.New("empty host in list")
		}
		if !strings.Contains(h, ":") {
			return nil, fmt.Errorf("host %q has no port", h)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}
