package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	legolog "github.com/go-acme/lego/v5/log"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/atomicfile"
	"github.com/berthd/berth/records"
)

// EnvACMEChallenge is the template env naming berth's HTTP-01 responder
// (host:port): the shipped nginx template routes
// /.well-known/acme-challenge/ of every port-80 server there when set.
const EnvACMEChallenge = "BERTH_ACME_CHALLENGE"

// DefaultACMEChallengeListen is where the HTTP-01 responder listens: a
// loopback port the proxy on this host forwards to, chosen once and kept
// across restarts (listenChallenges).
const DefaultACMEChallengeListen = "127.0.0.1:0"

// ACMEConfig turns an [acme] table into the Manager's configuration:
// storage defaults to <stateDir>/acme, certs_dir to <stateDir>/certs.
func ACMEConfig(c config.ACME, stateDir, prefix, host string) (acme.Config, error) {
	d, err := c.Durations()
	if err != nil {
		return acme.Config{}, err
	}
	return acme.Config{
		DirectoryURL: c.DirectoryURL, Email: c.Email, CAFile: c.CAFile,
		Storage:     cmp.Or(c.Storage, filepath.Join(stateDir, "acme")),
		CertsDir:    cmp.Or(c.CertsDir, filepath.Join(stateDir, "certs")),
		RenewBefore: d.RenewBefore, RetryMin: d.RetryMin, RetryMax: d.RetryMax,
		Prefix: prefix, Host: host,
	}, nil
}

// acmeSide is the daemon's ACME: the Manager and its challenge listener.
type acmeSide struct {
	m   *acme.Manager
	ln  net.Listener
	log *slog.Logger
}

// newACME opens the Manager (over the daemon's store) and the challenge
// listener, registers the berth_acme_* metrics, and returns the template
// env with EnvACMEChallenge set.
func (d *Daemon) newACME(cfg Config) (map[string]string, error) {
	c := *cfg.ACME
	c.Prefix = cmp.Or(c.Prefix, d.prefix())
	c.Host = cmp.Or(c.Host, cfg.Registrar.Host)
	// lego logs through a logger of its own, process-wide: the daemon's.
	legolog.SetDefault(d.log.With("component", "lego"))
	m, err := acme.New(d.st, c, acme.WithLogger(d.log.With("component", "acme")))
	if err != nil {
		return nil, err
	}
	ln, err := d.listenChallenges(cfg.ACMEChallengeListen, c.Storage)
	if err != nil {
		return nil, err
	}
	for _, col := range m.Collectors() {
		d.m.reg.MustRegister(col)
	}
	d.acme = &acmeSide{m: m, ln: ln, log: d.log}
	return withEnv(cfg.Env, EnvACMEChallenge, ln.Addr().String()), nil
}

// withEnv is env (nil: the process's) with k set to v, a copy.
func withEnv(env map[string]string, k, v string) map[string]string {
	if env == nil {
		env = map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	} else {
		env = maps.Clone(env)
	}
	env[k] = v
	return env
}

// ACMETemplateEnv is the environment a render outside berth up (berth
// render, berth watch) gives the templates, so that they route the
// challenges where berth up's responder listens: env (nil: the
// process's) with BERTH_ACME_CHALLENGE from challenge_listen, else from
// the address berth up keeps in the ACME storage (under stateDir unless
// [acme] storage is set). env is returned as it is when ACME is off, the
// variable is set already, or no address is known (berth up never ran).
func ACMETemplateEnv(env map[string]string, c config.ACME, stateDir string) map[string]string {
	if c.DirectoryURL == "" {
		return env
	}
	if _, set := env[EnvACMEChallenge]; set || (env == nil && os.Getenv(EnvACMEChallenge) != "") {
		return env
	}
	addr := c.ChallengeListen
	if addr == "" {
		b, err := os.ReadFile(filepath.Join(cmp.Or(c.Storage, filepath.Join(stateDir, "acme")), challengeAddrFile))
		if err != nil {
			return env
		}
		addr = strings.TrimSpace(string(b))
	}
	return withEnv(env, EnvACMEChallenge, addr)
}

// challengeAddrFile, in the ACME storage, keeps the address the
// responder last listened on when challenge_listen is not set.
const challengeAddrFile = "challenge-listen"

// listenChallenges opens the HTTP-01 responder's listener: on listen if
// set; else on the address this storage's daemon used last, if it is
// free, so that a restarted daemon gives the templates the same
// BERTH_ACME_CHALLENGE (a restart does not rewrite nginx.conf and
// reload it), else on a new loopback port, remembered.
func (d *Daemon) listenChallenges(listen, storage string) (net.Listener, error) {
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("%w: acme challenge_listen: %v", ErrSettings, err)
		}
		return ln, nil
	}
	file := filepath.Join(storage, challengeAddrFile)
	if b, err := os.ReadFile(file); err == nil {
		last := strings.TrimSpace(string(b))
		if host, _, err := net.SplitHostPort(last); err == nil && net.ParseIP(host).IsLoopback() {
			if ln, err := net.Listen("tcp", last); err == nil {
				return ln, nil
			}
			d.log.Info("the ACME challenge responder's last address is taken; a new one (the templates re-render)", "last", last)
		}
	}
	ln, err := net.Listen("tcp", DefaultACMEChallengeListen)
	if err != nil {
		return nil, fmt.Errorf("acme challenge responder: %w", err)
	}
	if err := atomicfile.Write(file, []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
		d.log.Warn("cannot remember the ACME challenge responder's address", "file", file, "err", err)
	}
	return ln, nil
}

// runACME serves the challenges and runs the Manager until ctx ends. An
// ACME CA that cannot be reached is retried by the Manager; nothing here
// stops the daemon.
func (d *Daemon) runACME(ctx context.Context, wg *sync.WaitGroup) {
	if d.acme == nil {
		return
	}
	a := d.acme
	srv := &http.Server{Handler: a.m.Responder(), ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() {
		if err := srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("ACME challenge responder stopped", "addr", a.ln.Addr(), "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	})
	wg.Go(func() { a.m.Run(ctx) })
	a.log.Info("ACME on", "challenge_responder", a.ln.Addr().String(), "records", records.ServicesPrefix(d.prefix()))
}

// ACME returns the ACME manager's status (ok false when ACME is off).
func (d *Daemon) ACME() (acme.Status, bool) {
	if d.acme == nil {
		return acme.Status{}, false
	}
	return d.acme.m.Status(), true
}
