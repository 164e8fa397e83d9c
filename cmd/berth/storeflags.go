package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
)

// storeFlags are the flags every command that opens a store shares. Each
// falls back to an environment variable, then to the default.
type storeFlags struct {
	url, ca, cert, key, user, password, token, stateDir string
	file                                                config.Store // [store] of berth.toml: below env and flags
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
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory holding the default embedded store (env BERTH_STATE_DIR; default "+backend.DefaultStateDir()+")")
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
		backend.WithLogger(log),
	}
}

// open opens the store the flags name.
func (f *storeFlags) open(ctx context.Context, log *slog.Logger) (store.Store, error) {
	st, err := backend.Open(ctx, f.URL(), f.options(log)...)
	if errors.Is(err, backend.ErrBadURL) {
		return nil, usageError{err}
	}
	return st, err
}
