package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/berthd/berth/cluster"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
)

// ClusterSettings make the daemon's embedded store a member of a cluster
// of berth hosts (package cluster).
type ClusterSettings struct {
	// Init makes this host the first member (berth up --cluster-init);
	// Join (https://HOST:2380) and Token join the cluster of a member. A
	// host that is a member already needs neither.
	Init        bool
	Join, Token string
	// Advertise is this host's address as other hosts reach it ([daemon]
	// advertise; default: with Join, the address of the route to the join
	// host; with Init, of the default route). The registrar records it for
	// published ports, and the cluster's peers use it.
	Advertise string
}

// embeddedDir is the directory of the embedded store the settings open
// ("" when the store is not embedded).
func (s Settings) embeddedDir() string {
	if s.StoreURL == "" {
		return filepath.Join(s.StateDir, "store")
	}
	if u, err := url.Parse(s.StoreURL); err == nil && u.Scheme == "embedded" {
		return u.Path
	}
	return ""
}

// prepareCluster readies the embedded store for its place in the cluster
// (before it opens) and returns the advertise address ("" when there is
// none) and the join service's address ("" when the host is no member).
func prepareCluster(ctx context.Context, s Settings, log *slog.Logger) (advertise, joinAddr string, err error) {
	c := s.Cluster
	var adv net.IP
	if c.Advertise != "" {
		if adv = net.ParseIP(c.Advertise); adv == nil {
			return "", "", fmt.Errorf("%w: advertise %q: not an IP address", ErrSettings, c.Advertise)
		}
	}
	dir := s.embeddedDir()
	if dir == "" {
		if c.Init || c.Join != "" {
			return "", "", fmt.Errorf("%w: --cluster-init and --join make the embedded store a cluster member; the store is %s", ErrSettings, s.StoreURL)
		}
		return c.Advertise, "", nil
	}
	name, err := s.Daemon.Registrar.HostName()
	if err != nil {
		return "", "", err
	}
	switch {
	case c.Init && c.Join != "":
		return "", "", fmt.Errorf("%w: --cluster-init starts a cluster, --join joins one: not both", ErrSettings)
	case c.Init:
		if adv == nil {
			if adv, err = cluster.RouteTo("192.0.2.1:9"); err != nil {
				return "", "", fmt.Errorf("%w: --cluster-init: no default route to take the advertise address from (%v): set [daemon] advertise", ErrSettings, err)
			}
		}
		tok, err := cluster.Init(dir, name, adv)
		if err != nil {
			return "", "", fmt.Errorf("cluster init: %w", err)
		}
		log.Info("cluster member; other hosts join with berth up --join https://"+cluster.JoinAddr(adv)+" --token TOKEN (berth cluster token prints it)", "name", name, "token_pin", tok.Pin[:12])
	case c.Join != "":
		if c.Token == "" {
			return "", "", fmt.Errorf("%w: --join needs the cluster's token (--token or BERTH_CLUSTER_TOKEN; berth cluster token prints it on a member)", ErrSettings)
		}
		joined, err := cluster.Join(ctx, dir, c.Join, c.Token, name, adv, cluster.WithLogger(log))
		_, member, _ := cluster.JoinService(dir)
		_, client, _ := etcd.ReadRemote(dir)
		switch {
		case errors.Is(err, cluster.ErrUnreachable) && (member && etcd.HasData(dir) || client):
			// A host restarted with its --join (a unit file's flags)
			// while the join host is down: it knows its cluster.
			log.Warn("join service unreachable; starting as the member or client this host is", "err", err)
		case err != nil:
			return "", "", fmt.Errorf("cluster join: %w", err)
		default:
			adv = joined
		}
	}
	joinAddr, member, err := cluster.JoinService(dir)
	if err != nil || !member {
		return c.Advertise, "", err
	}
	if adv == nil {
		host, _, _ := net.SplitHostPort(joinAddr)
		adv = net.ParseIP(strings.Trim(host, "[]"))
	}
	return adv.String(), joinAddr, nil
}

// serveJoins runs the join service of a member on joinAddr.
func serveJoins(ctx context.Context, st store.Store, dir, joinAddr string, log *slog.Logger) error {
	es, ok := st.(*etcd.Store)
	if !ok {
		return fmt.Errorf("cluster member %s: the store is not an etcd store", dir)
	}
	return cluster.NewServer(es.Client(), dir, log).Serve(ctx, joinAddr)
}
