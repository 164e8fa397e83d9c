package cluster

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthd/berth/internal/tick"
	"github.com/berthd/berth/store/etcd"
)

// Server is a member's join service: it admits the members that prove the
// cluster's join secret.
type Server struct {
	cli      *clientv3.Client
	storeDir string
	log      *slog.Logger
	mu       sync.Mutex // one admission at a time
}

// NewServer returns the join service of the member whose store is in
// storeDir, changing the membership through cli.
func NewServer(cli *clientv3.Client, storeDir string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{cli: cli, storeDir: storeDir, log: log}
}

// Serve serves the join service on addr (TLS with the member's peer
// certificate) until ctx ends.
func (s *Server) Serve(ctx context.Context, addr string) error {
	tlsCfg, err := etcd.ClusterPKIIn(s.storeDir).ServerTLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("join service: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/join", s.join)
	srv := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go s.promoteLearners(ctx)
	s.log.Info("cluster join service up", "addr", ln.Addr().String())
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// promoteEvery is how often a member tries to promote the learners.
const promoteEvery = 500 * time.Millisecond

// promoteLearners promotes every learner to a voting member once etcd
// accepts it (the learner has caught up with the leader), until ctx ends.
// Every member does it, so a learner whose admitting member died is
// promoted all the same.
func (s *Server) promoteLearners(ctx context.Context) {
	tick.Every(ctx, promoteEvery, func() {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := s.cli.MemberList(lctx, clientv3.WithSerializable())
		if err == nil {
			for _, m := range list.Members {
				if !m.IsLearner || m.Name == "" {
					continue // not started yet: nothing to catch up with
				}
				if _, err := s.cli.MemberPromote(lctx, m.ID); err == nil {
					s.log.Info("learner promoted to a voting member", "name", m.Name)
				} else {
					s.log.Debug("learner not promoted yet", "name", m.Name, "err", err)
				}
			}
		}
		cancel()
	})
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	secret, err := secretIn(s.storeDir, false)
	if err != nil {
		http.Error(w, "this member has no join secret", http.StatusServiceUnavailable)
		return
	}
	given, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !sameSecret(given, secret) {
		s.log.Warn("join refused: wrong token", "from", r.RemoteAddr)
		http.Error(w, "wrong join token", http.StatusForbidden)
		return
	}
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	ip, err := checkRequest(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		http.Error(w, "public key: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	initial, endpoints, restart, err := s.admit(ctx, req)
	if err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, errConflict) {
			status = http.StatusConflict
		}
		s.log.Warn("join refused", "name", req.Name, "peer_url", req.PeerURL, "err", err)
		http.Error(w, err.Error(), status)
		return
	}
	pki := etcd.ClusterPKIIn(s.storeDir)
	cert, err := pki.Issue(req.Name, ip, pub, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	caCert, caKey, err := pki.CA()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp := joinResponse{CACert: caCert, CAKey: caKey, PeerCert: cert, Secret: secret, InitialCluster: initial, Restart: restart}
	if len(endpoints) > 0 {
		// A client: a client certificate, no CA key, no secret.
		resp = joinResponse{CACert: caCert, PeerCert: cert, Endpoints: endpoints}
		s.log.Info("client admitted", "name", req.Name, "endpoints", endpoints)
	} else {
		s.log.Info("member admitted", "name", req.Name, "peer_url", req.PeerURL, "restart", restart)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// errConflict marks a joiner whose name or address another member has.
var errConflict = errors.New("conflict")

// checkRequest validates a join request; it returns the joiner's address.
func checkRequest(req joinRequest) (net.IP, error) {
	if err := CheckName(req.Name); err != nil {
		return nil, err
	}
	u, err := url.Parse(req.PeerURL)
	if err != nil || u.Scheme != "https" || u.Port() == "" {
		return nil, fmt.Errorf("peer URL %q: want https://IP:PORT", req.PeerURL)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("peer URL %q: want an IP address", req.PeerURL)
	}
	return ip, nil
}

// admit adds the joiner to the membership (or finds it there), and returns
// the initial cluster it starts with; or, when the cluster has MaxVoters
// voting members, the client URLs the joiner uses as its client.
func (s *Server) admit(ctx context.Context, req joinRequest) (initial string, endpoints []string, restart bool, err error) {
	// Serializable: an added member that never started (its answer lost)
	// can cost the cluster its quorum, and must still be found here.
	list, err := s.cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return "", nil, false, fmt.Errorf("list members: %w", err)
	}
	members := list.Members
	var found *MemberInfo
	for _, m := range list.Members {
		mi := infoOf(m)
		hasURL := mi.PeerURL == req.PeerURL
		switch {
		case mi.Name == req.Name && !hasURL:
			return "", nil, false, fmt.Errorf("%w: a member named %q already exists at %s (remove it first with berth cluster remove %s, or choose another host name)",
				errConflict, req.Name, mi.PeerURL, req.Name)
		case hasURL && mi.Name != "" && mi.Name != req.Name:
			return "", nil, false, fmt.Errorf("%w: member %q already has the peer URL %s", errConflict, mi.Name, req.PeerURL)
		case hasURL:
			found = &mi
		}
	}
	if found == nil {
		voters := 0
		for _, m := range members {
			if m.Name != "" && !m.IsLearner {
				voters++
				for _, u := range m.ClientURLs {
					if pu, err := url.Parse(u); err == nil && !isLoopback(pu.Hostname()) {
						endpoints = append(endpoints, u)
					}
				}
			}
		}
		if voters >= MaxVoters {
			if len(endpoints) == 0 {
				return "", nil, false, fmt.Errorf("the cluster has %d voting members and none serves clients on its advertise address", voters)
			}
			return "", endpoints, false, nil
		}
		endpoints = nil
	}
	switch {
	case found != nil && found.Started && req.HaveData:
		restart = true
	case found != nil && found.Started:
		// The same host without its data: it joins again as a new member.
		if _, err := s.cli.MemberRemove(ctx, found.ID); err != nil {
			return "", nil, false, fmt.Errorf("remove the old member %q: %w", req.Name, err)
		}
		found = nil
	}
	if found == nil {
		// As a learner: it does not count towards the quorum until it has
		// caught up and a member promotes it (promoteLearners), so the
		// cluster stays available while it starts, or if it never does.
		resp, err := s.cli.MemberAddAsLearner(ctx, []string{req.PeerURL})
		if err != nil {
			return "", nil, false, fmt.Errorf("add member %q at %s: %w", req.Name, req.PeerURL, err)
		}
		members = resp.Members // the membership after the addition
	}
	var parts []string
	for _, m := range members {
		mi := infoOf(m)
		switch {
		case mi.PeerURL == req.PeerURL:
			parts = append(parts, req.Name+"="+req.PeerURL)
		case mi.Started:
			for _, u := range m.PeerURLs {
				parts = append(parts, mi.Name+"="+u)
			}
		}
	}
	return strings.Join(parts, ","), nil, restart, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip == nil || ip.IsLoopback()
}
