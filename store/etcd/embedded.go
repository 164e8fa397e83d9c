package etcd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
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

// ErrNoStore reports that a directory holds no embedded store (and
// EmbeddedConfig.MustExist forbade creating one).
var ErrNoStore = errors.New("no embedded store")

// ErrNotServed reports that no process serves an embedded store (and
// EmbeddedConfig.JoinOnly forbade serving it).
var ErrNotServed = errors.New("no server for the embedded store")

// ErrNoAccess reports that this process may not read the embedded store's
// credentials (or its directory).
var ErrNoAccess = errors.New("no access to the embedded store")

// EmbeddedConfig configures Embedded.
type EmbeddedConfig struct {
	// Dir holds the server's data (Dir/data), its credentials (Dir/tls)
	// and the "endpoint" file other processes use to find it.
	Dir string
	// MustExist opens only an existing store: one a process serves, or one
	// kept on disk. Without it, a missing store is created.
	MustExist bool
	// JoinOnly opens only a store another process serves: Embedded never
	// starts a server then (ErrNotServed), so a short-lived command never
	// becomes the server a daemon starting at the same time would join.
	JoinOnly bool
	// Group (a group name or id), if set, may use the store too: when this
	// process serves it, Dir and Dir/tls become mode 0750 and the client
	// certificate and key 0640, owned by that group. The data and the
	// server's and CA's keys stay private. Every start applies the modes,
	// so a server started without Group closes the store to it again.
	Group string
	// Logger receives the server's warnings and errors (nil: slog.Default()).
	Logger *slog.Logger
}

// File names inside the embedded store's directory.
const (
	// endpointFile holds the client URL of the server. It outlives the
	// server: the next one listens on the same address, so clients
	// reconnect across restarts.
	endpointFile = "endpoint"
	lockFile     = "lock" // held (flock) by the process serving Dir
	dataDir      = "data"
)

// Embedded opens the embedded store kept under cfg.Dir. If another process
// serves that directory (it holds Dir/lock), the returned store is a client
// of that server; otherwise Embedded starts an in-process etcd server and
// Close stops it. Data survives restarts.
//
// The server listens on 127.0.0.1 only, on the port recorded in
// Dir/endpoint (chosen at the first start, reused after), and speaks TLS
// only: it accepts a client only if it presents the certificate kept in
// Dir/tls, which only the directory's owner (root, for berth's state dir)
// can read. Clients in this package read it from there.
func Embedded(ctx context.Context, cfg EmbeddedConfig) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Dir == "" {
		return nil, errors.New("embedded store: no directory")
	}
	dir := filepath.Clean(cfg.Dir)
	gid, err := lookupGroup(cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	}
	if cfg.MustExist {
		if err := checkStore(dir); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}

	if r, ok, err := ReadRemote(dir); errors.Is(err, fs.ErrPermission) {
		return nil, accessError(dir, filepath.Join(dir, remoteFile), err)
	} else if err != nil {
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	} else if ok {
		// A client of a cluster on other hosts: no server here.
		creds := credentialsIn(dir)
		return New(ctx, Config{
			Endpoints: r.Endpoints, CAFile: creds.ca, CertFile: creds.client, KeyFile: creds.clientKey, Logger: log,
			desc: "embedded " + dir + " (a client of the cluster at " + strings.Join(r.Endpoints, ",") + ")",
		})
	}
	// One server per directory: whoever holds Dir/lock serves it; anyone
	// else joins that server once it answers (it may still be starting, or
	// stopping: then the lock is free again soon).
	deadline := time.Now().Add(embeddedStartTimeout)
	var joinErr error
	for {
		lock, err := lockDir(dir)
		switch {
		case errors.Is(err, syscall.EWOULDBLOCK):
			s, err := joinRunning(ctx, dir, credentialsIn(dir), log)
			if s != nil || errors.Is(err, ErrNoAccess) {
				return s, err
			}
			joinErr = err
			if time.Now().After(deadline) {
				pid, _ := os.ReadFile(filepath.Join(dir, lockFile))
				return nil, fmt.Errorf("embedded store %s: served by process %s, which does not answer within %s: %w (%v)",
					dir, strings.TrimSpace(string(pid)), embeddedStartTimeout, store.ErrUnavailable, joinErr)
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		case errors.Is(err, fs.ErrPermission):
			return nil, accessError(dir, filepath.Join(dir, lockFile), err)
		case err != nil:
			return nil, fmt.Errorf("embedded store %s: %w", dir, err)
		}
		// Nobody serves it.
		var refuse error
		if _, err := os.Stat(filepath.Join(dir, dataDir)); err != nil && cfg.MustExist {
			refuse = fmt.Errorf("%w at %s: no %s and no server running", ErrNoStore, dir, filepath.Join(dir, dataDir))
		} else if cfg.JoinOnly {
			refuse = fmt.Errorf("%w: the store at %s exists, but no process serves it", ErrNotServed, dir)
		}
		if refuse != nil {
			lock.Close()
			return nil, refuse
		}
		s, err := serve(ctx, dir, lock, gid, log)
		if err != nil {
			lock.Close()
			return nil, err
		}
		return s, nil
	}
}

// checkStore reports ErrNoStore unless dir holds an embedded store, and
// ErrNoAccess if this process may not look.
func checkStore(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w at %s: the directory does not exist", ErrNoStore, dir)
	case errors.Is(err, fs.ErrPermission):
		return accessError(dir, dir, err)
	case err != nil:
		return fmt.Errorf("embedded store %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%w at %s: not a directory", ErrNoStore, dir)
	}
	for _, name := range []string{dataDir, endpointFile, remoteFile} {
		_, err := os.Lstat(filepath.Join(dir, name))
		if err == nil {
			return nil
		}
		if errors.Is(err, fs.ErrPermission) {
			return accessError(dir, filepath.Join(dir, name), err)
		}
	}
	return fmt.Errorf("%w at %s: no %s", ErrNoStore, dir, filepath.Join(dir, dataDir))
}

// accessError explains that path, part of the store in dir, cannot be read,
// and who can.
func accessError(dir, path string, err error) error {
	who, how := "its owner", "as its owner"
	if fi, serr := os.Stat(dir); serr == nil {
		st, _ := fi.Sys().(*syscall.Stat_t)
		if st != nil && st.Uid == 0 {
			who, how = "root", "as root (e.g. with sudo)"
		}
		if st != nil && fi.Mode()&0o050 == 0o050 && st.Gid != 0 {
			name := strconv.Itoa(int(st.Gid))
			if g, err := user.LookupGroupId(name); err == nil {
				name = g.Name
			}
			who += " and the members of group " + name
			how += ", or as a member of group " + name
		}
	} else if os.Geteuid() != 0 {
		who, how = "root", "as root (e.g. with sudo)"
	}
	return fmt.Errorf("embedded store %s: %w: cannot read %s (%v): the store's credentials are readable only by %s; run the command %s",
		dir, ErrNoAccess, path, errors.Unwrap(err), who, how)
}

// lookupGroup resolves a group name or id; "" is -1 (no group).
func lookupGroup(group string) (int, error) {
	if group == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(group); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// serve starts the server on dir, whose lock the caller holds; group gid
// (unless -1) may use it.
func serve(ctx context.Context, dir string, lock *os.File, gid int, log *slog.Logger) (*Store, error) {
	creds := credentialsIn(dir)
	member, clustered, err := ReadMember(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	}
	var extraIPs []net.IP
	if clustered && member.ClientURL != "" {
		if err := ClusterPKIIn(dir).adoptCA(creds); err != nil {
			return nil, fmt.Errorf("embedded store %s: %w", dir, err)
		}
		extraIPs = append(extraIPs, member.clientIP())
	}
	if err := creds.ensure(time.Now(), extraIPs...); err != nil {
		return nil, fmt.Errorf("embedded store %s: credentials: %w", dir, err)
	}
	if err := creds.share(dir, gid); err != nil {
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	}
	epPath := filepath.Join(dir, endpointFile)
	clientURL, peerURL, err := listenURLs(epPath)
	if errors.Is(err, errPortTaken) {
		return nil, portTakenError(dir, epPath, err)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	}
	tlsInfo := transport.TLSInfo{
		CertFile: creds.server, KeyFile: creds.serverKey,
		TrustedCAFile: creds.ca, ClientCertAuth: true,
	}

	ecfg := embed.NewConfig()
	ecfg.Name = "berth"
	ecfg.Dir = filepath.Join(dir, dataDir)
	ecfg.ListenClientUrls = []url.URL{*clientURL}
	ecfg.AdvertiseClientUrls = []url.URL{*clientURL}
	ecfg.ListenPeerUrls = []url.URL{*peerURL}
	ecfg.AdvertisePeerUrls = []url.URL{*peerURL}
	ecfg.ClientTLSInfo = tlsInfo
	ecfg.PeerTLSInfo = tlsInfo
	ecfg.InitialCluster = ecfg.InitialClusterFromName(ecfg.Name)
	if clustered {
		if err := member.configure(ecfg, ClusterPKIIn(dir)); err != nil {
			return nil, fmt.Errorf("embedded store %s: %w", dir, err)
		}
	}
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
		if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
			return nil, portTakenError(dir, epPath, err)
		}
		return nil, fmt.Errorf("embedded store %s: start: %w", dir, err)
	}
	if err := waitServing(ctx, e); err != nil {
		if clustered {
			return nil, fmt.Errorf("embedded store %s (cluster member %s): %w; if the member was removed from its cluster, join it again with berth up --join", dir, member.Name, err)
		}
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	}
	endpoint := clientURL.String()
	if err := writeFileAtomic(epPath, []byte(endpoint+"\n"), 0o600); err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	}
	if err := creds.share(dir, gid); err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	}
	s, err := New(ctx, Config{
		Endpoints: []string{endpoint}, CAFile: creds.ca, CertFile: creds.client, KeyFile: creds.clientKey, Logger: log,
		desc: "embedded " + dir + " (" + endpoint + ")",
	})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded store %s: %w", dir, err)
	}
	if clustered {
		if err := member.advertise(ctx, s.cli, uint64(e.Server.MemberID())); err != nil {
			s.cli.Close()
			e.Close()
			return nil, fmt.Errorf("embedded store %s: %w", dir, err)
		}
		s.desc = "embedded " + dir + " (" + endpoint + ", member " + member.Name + " at " + member.PeerURL + ")"
	}
	if clustered {
		// A member removed from its cluster stops serving; say so.
		go func() {
			select {
			case <-e.Server.StopNotify():
				if !muted.Load() {
					log.Error("the embedded store stopped serving: was this member removed from its cluster (berth cluster ls on another host)? Stop berth up and join again with --join",
						"store", s.desc)
				}
			case <-s.closed:
			}
		}()
	}
	s.onClose = func() error {
		muted.Store(true)
		e.Close()
		return lock.Close() // releases the directory
	}
	return s, nil
}

// waitServing waits, for at most embeddedStartTimeout, until e serves
// clients: ready, and not a learner (a member that joined as a learner
// serves no client until a member promotes it; package cluster's join
// service does once it has caught up). On failure e is closed.
func waitServing(ctx context.Context, e *embed.Etcd) error {
	ctx, cancel := context.WithTimeout(ctx, embeddedStartTimeout)
	defer cancel()
	ready, poll := e.Server.ReadyNotify(), (<-chan time.Time)(nil)
	for {
		select {
		case <-ready:
			ready = nil
		case <-poll:
		case err := <-e.Err():
			e.Close()
			return err
		case <-ctx.Done():
			what := "not ready"
			if ready == nil {
				what = "still a learner (not promoted to a voting member)"
			}
			e.Server.Stop()
			e.Close()
			return fmt.Errorf("%s within %s: %w", what, embeddedStartTimeout, ctx.Err())
		}
		if ready == nil {
			if !e.Server.IsLearner() {
				return nil
			}
			poll = time.After(100 * time.Millisecond)
		}
	}
}

// errPortTaken reports that the recorded client port is in use.
var errPortTaken = errors.New("port taken")

// listenURLs returns the client URL to listen on (the one recorded in
// epPath, or a new free port on 127.0.0.1) and the peer URL (a new free
// port). It holds the ports open while it chooses, so that the two differ,
// and fails with errPortTaken when the recorded port is in use.
func listenURLs(epPath string) (client, peer *url.URL, err error) {
	var recorded string
	if b, err := os.ReadFile(epPath); err == nil {
		u, err := url.Parse(strings.TrimSpace(string(b)))
		if err != nil || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Port() == "0" {
			return nil, nil, fmt.Errorf("%s: not an address on 127.0.0.1 (%q): remove it to choose a new port", epPath, strings.TrimSpace(string(b)))
		}
		recorded = u.Host
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	hold := func(addr string) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", err
		}
		held = append(held, ln)
		return ln.Addr().String(), nil
	}
	clientHost := recorded
	if recorded != "" {
		if _, err := hold(recorded); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errPortTaken, err)
		}
	} else if clientHost, err = hold("127.0.0.1:0"); err != nil {
		return nil, nil, err
	}
	peerHost, err := hold("127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	return &url.URL{Scheme: "https", Host: clientHost}, &url.URL{Scheme: "https", Host: peerHost}, nil
}

// portTakenError explains that the address recorded in epPath is in use.
func portTakenError(dir, epPath string, err error) error {
	return fmt.Errorf("embedded store %s: its address (recorded in %s) is taken by another program: stop that program, or remove %s to choose a new port (clients started before then must be restarted): %w",
		dir, epPath, epPath, err)
}

// lockDir takes the directory's server lock without waiting; it fails with
// EWOULDBLOCK when another process holds it. The lock file records the
// holder's pid, for messages.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrPermission) {
		f, err = os.Open(path) // a member of the store's group: flock needs no write access
	}
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

// joinRunning connects to the server named in dir's endpoint file, with
// dir's client credentials.
func joinRunning(ctx context.Context, dir string, creds credentials, log *slog.Logger) (*Store, error) {
	epPath := filepath.Join(dir, endpointFile)
	b, err := os.ReadFile(epPath)
	if errors.Is(err, fs.ErrPermission) {
		return nil, accessError(dir, epPath, err)
	}
	if err != nil {
		return nil, err // not written yet: the server is starting
	}
	for _, f := range creds.clientFiles() {
		fh, err := os.Open(f)
		if errors.Is(err, fs.ErrPermission) {
			return nil, accessError(dir, f, err)
		}
		if err != nil {
			return nil, err
		}
		fh.Close()
	}
	endpoint := strings.TrimSpace(string(b))
	s, err := New(ctx, Config{
		Endpoints: []string{endpoint}, CAFile: creds.ca, CertFile: creds.client, KeyFile: creds.clientKey,
		DialTimeout: time.Second, Logger: log,
		desc:     "embedded " + dir + " (served by another process)",
		relocate: followEndpoint(epPath, endpoint),
	})
	if err != nil {
		log.Debug("embedded store: no answer yet at the recorded endpoint", "endpoint", endpoint, "err", err)
		return nil, err
	}
	return s, nil
}

// followEndpoint returns what a joined store does while its connection is
// lost: if the endpoint file names another address (the store was given a
// new port), the client goes there.
func followEndpoint(epPath, endpoint string) func(*Store) {
	return func(s *Store) {
		b, err := os.ReadFile(epPath)
		if err != nil {
			return
		}
		next := strings.TrimSpace(string(b))
		if next == endpoint {
			return
		}
		u, err := url.Parse(next)
		if err != nil || u.Host == "" {
			return
		}
		s.log.Warn("embedded store moved; following it", "store", s.desc, "from", endpoint, "to", next)
		s.cli.SetEndpoints(u.Host)
		endpoint = next
	}
}

// writeFileAtomic writes data to path, with mode perm, through a temporary
// file that is synced and renamed over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
