package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/berthd/berth/store"
)

// Limits of the embedded server, above etcd's defaults (128 operations,
// 1.5 MiB) so that one host's whole registration fits in one transaction.
const (
	embeddedMaxTxnOps       = 10000
	embeddedMaxRequestBytes = 8 << 20
	// embeddedStartTimeout bounds how long Embedded waits for the server.
	embeddedStartTimeout = 30 * time.Second
	// embeddedRetention is how many revisions of history the embedded
	// server keeps for watches to resume from.
	embeddedRetention = 10000
)

// EmbeddedConfig configures Embedded.
type EmbeddedConfig struct {
	// Dir holds the server's data and the "endpoint" file other processes
	// use to find a running server.
	Dir string
	// Logger receives the server's warnings and errors (nil: slog.Default()).
	Logger *slog.Logger
}

// endpointFile names the file, inside the embedded store's directory, that
// holds the client URL of the server currently running on it.
const endpointFile = "endpoint"

// Embedded opens the embedded store kept under cfg.Dir. If another process
// already serves that directory (its address is in Dir/endpoint and it
// answers), the returned store is a client of that server; otherwise
// Embedded starts an in-process etcd server listening only on 127.0.0.1,
// and Close stops it. Data survives restarts.
func Embedded(ctx context.Context, cfg EmbeddedConfig) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Dir == "" {
		return nil, errors.New("embedded store: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	epPath := filepath.Join(cfg.Dir, endpointFile)

	if s, err := joinRunning(ctx, epPath, log); s != nil || err != nil {
		return s, err
	}
	// One server per directory: whoever holds Dir/lock serves it; anyone
	// else joins that server once it answers (it may still be starting).
	lock, err := lockDir(cfg.Dir)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return awaitServer(ctx, cfg.Dir, epPath, log)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded store %s: %w", cfg.Dir, err)
	}
	started := false
	defer func() {
		if !started {
			lock.Close()
		}
	}()

	ecfg := embed.NewConfig()
	ecfg.Name = "berth"
	ecfg.Dir = filepath.Join(cfg.Dir, "data")
	loopback, _ := url.Parse("http://127.0.0.1:0")
	ecfg.ListenClientUrls = []url.URL{*loopback}
	ecfg.AdvertiseClientUrls = []url.URL{*loopback}
	ecfg.ListenPeerUrls = []url.URL{*loopback}
	ecfg.AdvertisePeerUrls = []url.URL{*loopback}
	ecfg.InitialCluster = ecfg.InitialClusterFromName(ecfg.Name)
	ecfg.ListenMetricsUrls = nil
	ecfg.MaxTxnOps = embeddedMaxTxnOps
	ecfg.MaxRequestBytes = embeddedMaxRequestBytes
	// Keep the last embeddedRetention revisions: memory and disk stay
	// bounded whatever the write rate (an hourly compaction would keep
	// millions of revisions at 1,000 changes/s). A watcher further behind
	// gets ErrCompacted and lists again.
	ecfg.AutoCompactionMode = embed.CompactorModeRevision
	ecfg.AutoCompactionRetention = strconv.Itoa(embeddedRetention)
	// Errors only: at warning level etcd complains about choices that are
	// deliberate here (one port for gRPC and HTTP, simple auth tokens).
	zl, muted := newMutableZapLogger(log.With("component", "etcd-server"), slog.LevelError)
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)

	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		return nil, fmt.Errorf("embedded store %s: start: %w", cfg.Dir, err)
	}
	startCtx, cancel := context.WithTimeout(ctx, embeddedStartTimeout)
	defer cancel()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded store %s: %w", cfg.Dir, err)
	case <-startCtx.Done():
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded store %s: not ready within %s (is another process holding it?): %w", cfg.Dir, embeddedStartTimeout, startCtx.Err())
	}
	endpoint := "http://" + e.Clients[0].Addr().String()
	if err := writeFileAtomic(epPath, []byte(endpoint+"\n")); err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded store %s: %w", cfg.Dir, err)
	}
	s, err := New(ctx, Config{Endpoints: []string{endpoint}, Logger: log})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded store %s: %w", cfg.Dir, err)
	}
	s.desc = "embedded " + cfg.Dir
	s.onClose = func() error {
		if b, err := os.ReadFile(epPath); err == nil && strings.TrimSpace(string(b)) == endpoint {
			os.Remove(epPath)
		}
		muted.Store(true)
		e.Close()
		return lock.Close() // releases the directory
	}
	started = true
	return s, nil
}

// lockDir takes the directory's server lock without waiting; it fails with
// EWOULDBLOCK when another process holds it. The lock file records the
// holder's pid, for messages.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

// awaitServer joins the server another process is starting on dir.
func awaitServer(ctx context.Context, dir, epPath string, log *slog.Logger) (*Store, error) {
	deadline := time.Now().Add(embeddedStartTimeout)
	for time.Now().Before(deadline) {
		if s, err := joinRunning(ctx, epPath, log); s != nil || err != nil {
			return s, err
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	pid, _ := os.ReadFile(filepath.Join(dir, "lock"))
	return nil, fmt.Errorf("embedded store %s: held by process %s but not answering within %s: %w",
		dir, strings.TrimSpace(string(pid)), embeddedStartTimeout, store.ErrUnavailable)
}

// joinRunning connects to the server named in the endpoint file, if one
// answers there. It returns (nil, nil) when there is none.
func joinRunning(ctx context.Context, epPath string, log *slog.Logger) (*Store, error) {
	b, err := os.ReadFile(epPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	endpoint := strings.TrimSpace(string(b))
	s, err := New(ctx, Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, Logger: log})
	if err != nil {
		// A stale file from a process that is gone: start our own server.
		log.Debug("embedded store: no server at recorded endpoint; starting one", "endpoint", endpoint, "err", err)
		return nil, nil
	}
	s.desc = "embedded " + filepath.Dir(epPath) + " (served by another process at " + endpoint + ")"
	return s, nil
}

// writeFileAtomic writes data to path through a temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
