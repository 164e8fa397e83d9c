package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
	"github.com/berthd/berth/store/etcd"
)

// storeFlags are the flags every command that opens a store shares. Each
// falls back to an environment variable, then to the default.
type storeFlags struct {
	url, ca, cert, key, user, password, token, stateDir, group string
	file                                                       config.Store // [store] of berth.toml: below env and flags

	// client is set for the store commands (kv, render, watch): they use
	// the running daemon's store and create one only with --store-create.
	client bool
	serve  bool   // --store-serve
	create bool   // --store-create
	host   string // -H: the daemon whose store to use
}

// useConfig takes the [store] table of the first configuration file that
// has one as the defaults under the environment and the flags.
func (f *storeFlags) useConfig(files []*config.File) {
	for _, cf := range files {
		if cf.Store != (config.Store{}) {
			f.file = cf.Store
			return
		}
	}
}

// addStoreFlags registers the store flags on fs.
func addStoreFlags(fs *pflag.FlagSet) *storeFlags {
	f := &storeFlags{}
	fs.StringVar(&f.url, "store", "", "store URL: embedded:///dir, etcd://h1:2379,h2:2379, etcds://..., consul://host:8500, file:///path, env:// (env BERTH_STORE; default: the embedded store under the state dir)")
	fs.StringVar(&f.ca, "store-ca", "", "CA certificate file for TLS to the store (env BERTH_STORE_CA)")
	fs.StringVar(&f.cert, "store-cert", "", "client certificate file for TLS to the store (env BERTH_STORE_CERT)")
	fs.StringVar(&f.key, "store-key", "", "client key file for TLS to the store (env BERTH_STORE_KEY)")
	fs.StringVar(&f.user, "store-user", "", "etcd username (env BERTH_STORE_USER)")
	fs.StringVar(&f.password, "store-password", "", "etcd password (env BERTH_STORE_PASSWORD)")
	fs.StringVar(&f.token, "store-token", "", "Consul ACL token (env BERTH_STORE_TOKEN, CONSUL_HTTP_TOKEN)")
	fs.StringVar(&f.group, "store-group", "", "group (name or id) that may also use the embedded store this command serves: its credentials become readable by the group (env BERTH_STORE_GROUP; default: root only)")
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory holding the default embedded store (env BERTH_STATE_DIR; default "+backend.DefaultStateDir()+")")
	return f
}

// storeCommandHelp explains, for the store commands' help, which store they
// use.
const storeCommandHelp = `Which store: --store (or BERTH_STORE, or the [store] table of a --config
file); else the embedded store under --state-dir; else the store of the
daemon at -H; else under BERTH_STATE_DIR; else the store of the daemon at
BERTH_HOST; else the store of the daemon at ` + api.DefaultSocket + ` if one
answers there; else the embedded store under the default state directory.
The embedded store's credentials are read from its directory
(<state dir>/store/tls), which only root can read (and the group the
daemon names with --store-group). These commands use the
store a running process (berth up) serves: without one they fail, naming
where they looked; --store-serve serves an existing store for the duration
of the command, --store-create also creates it.`

// addStoreCommandFlags registers the store flags of the commands that read
// and write a store beside the daemon (kv, render, watch): also -H and
// --store-create.
func addStoreCommandFlags(fs *pflag.FlagSet) *storeFlags {
	f := addStoreFlags(fs)
	f.client = true
	fs.StringVarP(&f.host, "host", "H", "", "use the store of the daemon at this socket (env BERTH_HOST; see the help for the order)")
	fs.BoolVar(&f.serve, "store-serve", false, "serve the embedded store for the duration of the command if no process (berth up) serves it")
	fs.BoolVar(&f.create, "store-create", false, "like --store-serve, and create the embedded store if it does not exist (berth up creates it)")
	return f
}

// URL is the store URL after flags and environment.
func (f *storeFlags) URL() string { return cmp.Or(f.url, os.Getenv("BERTH_STORE"), f.file.URL) }

// options turns the flags (or their environment fallbacks) into backend
// options.
func (f *storeFlags) options(log *slog.Logger) []backend.Option {
	return []backend.Option{
		backend.WithTLS(
			cmp.Or(f.ca, os.Getenv("BERTH_STORE_CA"), f.file.CA),
			cmp.Or(f.cert, os.Getenv("BERTH_STORE_CERT"), f.file.Cert),
			cmp.Or(f.key, os.Getenv("BERTH_STORE_KEY"), f.file.Key)),
		backend.WithCredentials(
			cmp.Or(f.user, os.Getenv("BERTH_STORE_USER"), f.file.Username),
			cmp.Or(f.password, os.Getenv("BERTH_STORE_PASSWORD"), f.file.Password)),
		backend.WithToken(cmp.Or(f.token, os.Getenv("BERTH_STORE_TOKEN"), os.Getenv("CONSUL_HTTP_TOKEN"), f.file.Token)),
		backend.WithStateDir(cmp.Or(f.stateDir, os.Getenv("BERTH_STATE_DIR"))),
		backend.WithGroup(cmp.Or(f.group, os.Getenv("BERTH_STORE_GROUP"))),
		backend.WithLogger(log),
	}
}

// open opens the store the flags name.
func (f *storeFlags) open(ctx context.Context, log *slog.Logger) (store.Store, error) {
	if !f.client {
		return f.openURL(ctx, log, f.URL())
	}
	rawURL, err := f.resolve(ctx, log)
	if err != nil {
		return nil, err
	}
	return f.openURL(ctx, log, rawURL)
}

func (f *storeFlags) openURL(ctx context.Context, log *slog.Logger, rawURL string, extra ...backend.Option) (store.Store, error) {
	opts := f.options(log)
	if f.client && !f.create {
		opts = append(opts, backend.WithMustExist())
		if !f.serve {
			opts = append(opts, backend.WithJoinOnly())
		}
	}
	st, err := backend.Open(ctx, rawURL, append(opts, extra...)...)
	switch {
	case errors.Is(err, backend.ErrBadURL):
		return nil, usageError{err}
	case errors.Is(err, etcd.ErrNotServed):
		return nil, fmt.Errorf("%w; start berth up, or add --store-serve to serve it for this command only", err)
	case errors.Is(err, etcd.ErrNoStore):
		return nil, fmt.Errorf("%w; no daemon serves it and none created it: to use the running daemon's store name its state directory (--state-dir, BERTH_STATE_DIR) or its socket (-H, BERTH_HOST); to create a store, add --store-create", err)
	case errors.Is(err, etcd.ErrNoAccess) && os.Geteuid() != 0:
		return nil, fmt.Errorf("%w (this command runs as uid %d)", err, os.Geteuid())
	}
	return st, err
}

// resolve picks the store URL of a store command, in the order
// storeCommandHelp gives. An empty URL is the embedded store under the
// state directory of the options.
func (f *storeFlags) resolve(ctx context.Context, log *slog.Logger) (string, error) {
	if u := f.URL(); u != "" {
		return u, nil
	}
	switch {
	case f.stateDir != "":
		return embeddedURL(f.stateDir), nil
	case f.host != "":
		return f.daemonStore(ctx, f.host, true)
	case os.Getenv("BERTH_STATE_DIR") != "":
		return embeddedURL(os.Getenv("BERTH_STATE_DIR")), nil
	case os.Getenv("BERTH_HOST") != "":
		return f.daemonStore(ctx, os.Getenv("BERTH_HOST"), true)
	}
	u, err := f.daemonStore(ctx, api.DefaultSocket, false)
	if err != nil {
		log.Debug("no daemon answers at the default socket; using the default state directory", "socket", api.DefaultSocket, "err", err)
		return embeddedURL(backend.DefaultStateDir()), nil
	}
	return u, nil
}

// daemonInfoTimeout bounds the question to the daemon.
const daemonInfoTimeout = 5 * time.Second

// daemonStore asks the daemon at socket which store it uses. explicit says
// the user named the socket, so that a daemon that does not answer is an
// error worth the details.
func (f *storeFlags) daemonStore(ctx context.Context, socket string, explicit bool) (string, error) {
	u, _, err := daemonStoreInfo(ctx, socket, explicit)
	return u, err
}

// daemonStoreInfo is daemonStore with all the daemon reported.
func daemonStoreInfo(ctx context.Context, socket string, explicit bool) (string, api.Info, error) {
	if !explicit {
		if _, err := os.Stat(socket); err != nil {
			return "", api.Info{}, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, daemonInfoTimeout)
	defer cancel()
	info, err := api.NewClient(socket).Info(ctx)
	if err != nil {
		return "", info, fmt.Errorf("which store the daemon uses: %w", err)
	}
	if info.Store != "" {
		return info.Store, info, nil
	}
	if info.StateDir == "" {
		return "", info, fmt.Errorf("the berth daemon at %s reports neither its store nor its state directory; name the store with --store or --state-dir", socket)
	}
	return embeddedURL(info.StateDir), info, nil
}

// leftOut reads from the store of the daemon at socket what its registrar
// left out of each container's records, and why (records.LeftOut), by
// container id.
func leftOut(ctx context.Context, socket string) (map[string][]records.FieldError, error) {
	ctx, cancel := context.WithTimeout(ctx, daemonInfoTimeout)
	defer cancel()
	u, info, err := daemonStoreInfo(ctx, socket, true)
	if err != nil {
		return nil, err
	}
	f := &storeFlags{client: true, host: socket}
	st, err := f.openURL(ctx, slog.New(slog.DiscardHandler), u)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	kvs, _, err := st.List(ctx, records.ServicesPrefix(cmp.Or(info.Prefix, records.DefaultPrefix)))
	if err != nil {
		return nil, err
	}
	values := make([][]byte, len(kvs))
	for i, kv := range kvs {
		values[i] = kv.Value
	}
	return records.LeftOut(values), nil
}

// embeddedURL is the URL of the embedded store under stateDir.
func embeddedURL(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	return (&url.URL{Scheme: "embedded", Path: filepath.Join(abs, "store")}).String()
}
