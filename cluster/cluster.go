package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berthd/berth/store/etcd"
)

// Ports on a member's advertise address.
const (
	// DefaultPort is the join service's port: the one --join names.
	DefaultPort = 2380
	// PeerPort is etcd's peer port (the members' raft traffic).
	PeerPort = DefaultPort + 1
	// ClientPort is the members' client port for the cluster's clients on
	// other hosts (their own host's clients use 127.0.0.1).
	ClientPort = DefaultPort - 1
)

// MaxVoters is how many voting members a cluster gets: a host that joins
// a cluster with as many becomes its client (its daemon uses the members'
// stores; it runs none itself). More voters would only slow every write.
const MaxVoters = 5

// DefaultJoinTimeout bounds how long Join waits for a join service that
// does not answer.
const DefaultJoinTimeout = 30 * time.Second

// Errors of Join and of the join service.
var (
	// ErrRefused reports that the join service refused the joiner (name
	// taken, cluster unable to add a member).
	ErrRefused = errors.New("join refused")
	// ErrWrongCA reports a join service whose CA is not the token's.
	ErrWrongCA = errors.New("the join service's CA is not the one the token names")
	// ErrUnreachable reports a join service that did not answer in time.
	ErrUnreachable = errors.New("join service unreachable")
)

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckName reports whether name can name a member (it is the host's name
// in the store's keys, and goes into etcd's initial-cluster list).
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("member name %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// PeerURL is the etcd peer URL of a member advertising ip.
func PeerURL(ip net.IP) string {
	return "https://" + net.JoinHostPort(ip.String(), strconv.Itoa(PeerPort))
}

// ClientURL is the client URL a member advertising ip serves the
// cluster's clients on.
func ClientURL(ip net.IP) string {
	return "https://" + net.JoinHostPort(ip.String(), strconv.Itoa(ClientPort))
}

// JoinAddr is the address of the join service of a member advertising ip.
func JoinAddr(ip net.IP) string { return net.JoinHostPort(ip.String(), strconv.Itoa(DefaultPort)) }

// Init makes the store in storeDir the first member of a new cluster,
// named name and reachable at advertise; a store that is a member already
// is left as it is. It returns the join token.
func Init(storeDir, name string, advertise net.IP) (Token, error) {
	if err := CheckName(name); err != nil {
		return Token{}, err
	}
	pki := etcd.ClusterPKIIn(storeDir)
	m, ok, err := etcd.ReadMember(storeDir)
	if err != nil {
		return Token{}, err
	}
	if ok && m.Name != name {
		return Token{}, fmt.Errorf("the store in %s is cluster member %q already, not %q", storeDir, m.Name, name)
	}
	now := time.Now()
	if !ok {
		if err := pki.InitCA(now); err != nil {
			return Token{}, fmt.Errorf("cluster CA: %w", err)
		}
		if err := pki.IssueSelf(name, advertise, now); err != nil {
			return Token{}, fmt.Errorf("peer certificate: %w", err)
		}
		m = etcd.Member{Name: name, PeerURL: PeerURL(advertise), ClientURL: ClientURL(advertise), State: etcd.StateNew}
		m.InitialCluster = name + "=" + m.PeerURL
		if err := etcd.WriteMember(storeDir, m); err != nil {
			return Token{}, err
		}
	}
	return TokenOf(storeDir)
}

// TokenOf returns the join token of the cluster the store in storeDir is a
// member of (its secret is made on first use).
func TokenOf(storeDir string) (Token, error) {
	if _, ok, err := etcd.ReadMember(storeDir); err != nil || !ok {
		return Token{}, cmpErr(err, fmt.Errorf("the store in %s is not a cluster member (berth up --cluster-init makes it the first)", storeDir))
	}
	pin, err := etcd.ClusterPKIIn(storeDir).Pin()
	if err != nil {
		return Token{}, fmt.Errorf("cluster CA: %w", err)
	}
	secret, err := secretIn(storeDir, true)
	if err != nil {
		return Token{}, fmt.Errorf("join secret: %w", err)
	}
	return Token{Pin: pin, Secret: secret}, nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// JoinService reports whether the store in storeDir is a cluster member,
// and the address its join service listens on.
func JoinService(storeDir string) (joinAddr string, ok bool, err error) {
	m, ok, err := etcd.ReadMember(storeDir)
	if err != nil || !ok {
		return "", false, err
	}
	u, err := url.Parse(m.PeerURL)
	if err != nil {
		return "", false, err
	}
	return JoinAddr(net.ParseIP(u.Hostname())), true, nil
}

// joinRequest is what a joiner sends to POST /v1/join.
type joinRequest struct {
	Name      string `json:"name"`
	PeerURL   string `json:"peer_url"`
	PublicKey []byte `json:"public_key"` // PKIX DER
	HaveData  bool   `json:"have_data"`  // the joiner has a data dir from an earlier membership
}

// joinResponse is the join service's answer.
type joinResponse struct {
	CACert         []byte `json:"ca_cert"` // PEM
	CAKey          []byte `json:"ca_key"`  // PEM
	PeerCert       []byte `json:"peer_cert"`
	Secret         string `json:"secret"`
	InitialCluster string `json:"initial_cluster"`
	// Restart: the joiner is a started member already (same name, same
	// address) and keeps its data.
	Restart bool `json:"restart"`
	// Endpoints, when set, make the joiner a client of the cluster, not a
	// member (it has MaxVoters members): PeerCert is its client
	// certificate, and CAKey is not sent.
	Endpoints []string `json:"endpoints,omitempty"`
}

// JoinOption configures Join.
type JoinOption func(*joinOptions)

type joinOptions struct {
	timeout time.Duration
	log     *slog.Logger
}

// WithJoinTimeout bounds the wait for a join service that does not answer
// (default DefaultJoinTimeout).
func WithJoinTimeout(d time.Duration) JoinOption { return func(o *joinOptions) { o.timeout = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) JoinOption { return func(o *joinOptions) { o.log = l } }

// Join asks the join service at joinURL (https://HOST:2380) to admit the
// store in storeDir as member name at advertise (nil: the address of the
// route to HOST), and prepares the store to start as that member. A store
// that is a started member already keeps its data; otherwise its old data
// is moved aside. Errors: ErrBadToken (malformed or refused), ErrWrongCA,
// ErrRefused, ErrUnreachable.
func Join(ctx context.Context, storeDir, joinURL, token, name string, advertise net.IP, opts ...JoinOption) (net.IP, error) {
	o := joinOptions{timeout: DefaultJoinTimeout, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := CheckName(name); err != nil {
		return nil, err
	}
	tok, err := ParseToken(token)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(joinURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return nil, fmt.Errorf("--join %q: want https://HOST[:PORT] of a member's join service", joinURL)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(DefaultPort))
	}
	if advertise == nil {
		if advertise, err = RouteTo(u.Host); err != nil {
			return nil, fmt.Errorf("advertise address (the address of the route to %s): %w; set [daemon] advertise", u.Host, err)
		}
	}
	if m, ok, err := etcd.ReadMember(storeDir); err != nil {
		return nil, err
	} else if ok && m.Name != name {
		return nil, fmt.Errorf("the store in %s is cluster member %q, not %q", storeDir, m.Name, name)
	}
	key, err := etcd.NewPeerKey()
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	req := joinRequest{Name: name, PeerURL: PeerURL(advertise), PublicKey: pub, HaveData: etcd.HasData(storeDir)}
	resp, err := askToJoin(ctx, u.String()+"/v1/join", tok, req, o)
	if err != nil {
		return nil, err
	}
	if len(resp.Endpoints) > 0 {
		if err := etcd.WriteRemote(storeDir, etcd.Remote{Endpoints: resp.Endpoints}, resp.CACert, resp.PeerCert, key); err != nil {
			return nil, err
		}
		o.log.Info("the cluster has its voting members; this host is its client", "endpoints", resp.Endpoints, "via", u.Host)
		return advertise, nil
	}
	pki := etcd.ClusterPKIIn(storeDir)
	if err := pki.Install(resp.CACert, resp.CAKey); err != nil {
		return nil, err
	}
	if err := pki.InstallPeer(resp.PeerCert, key); err != nil {
		return nil, err
	}
	if err := writeSecret(storeDir, resp.Secret); err != nil {
		return nil, err
	}
	if !resp.Restart {
		moved, err := etcd.MoveDataAside(storeDir, time.Now())
		if err != nil {
			return nil, fmt.Errorf("move the old data aside: %w", err)
		}
		if moved != "" {
			o.log.Warn("joining the cluster as a new member; the store's old data is kept aside", "moved_to", moved)
		}
	}
	m := etcd.Member{Name: name, PeerURL: req.PeerURL, ClientURL: ClientURL(advertise), InitialCluster: resp.InitialCluster, State: etcd.StateExisting}
	if err := etcd.WriteMember(storeDir, m); err != nil {
		return nil, err
	}
	o.log.Info("admitted to the cluster", "name", name, "peer_url", m.PeerURL, "via", u.Host, "restart", resp.Restart)
	return advertise, nil
}

// askToJoin posts req until the service answers, for at most o.timeout.
func askToJoin(ctx context.Context, endpoint string, tok Token, req joinRequest, o joinOptions) (joinResponse, error) {
	tlsCfg := &tls.Config{
		// The chain is checked against the token's pin, not the system's roots.
		InsecureSkipVerify: true,
		VerifyConnection:   func(cs tls.ConnectionState) error { return verifyPinned(cs, tok.Pin) },
		MinVersion:         tls.VersionTLS12,
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 15 * time.Second}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(req)
	deadline := time.Now().Add(o.timeout)
	for {
		hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		hr.Header.Set("Authorization", "Bearer "+tok.Secret)
		hr.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(hr)
		if err == nil {
			jr, retry, err := readJoinResponse(resp)
			if !retry || time.Now().After(deadline) {
				return jr, err
			}
			// The cluster cannot add a member yet (the last one added is
			// still catching up): ask again.
			o.log.Info("the cluster cannot admit a member yet; asking again", "endpoint", endpoint, "reason", err)
		} else if errors.Is(err, ErrWrongCA) {
			return joinResponse{}, fmt.Errorf("join %s: %w", endpoint, ErrWrongCA)
		}
		if time.Now().After(deadline) {
			return joinResponse{}, fmt.Errorf("join %s: %w within %s: %v", endpoint, ErrUnreachable, o.timeout, err)
		}
		if err != nil {
			o.log.Debug("join service does not answer yet", "endpoint", endpoint, "err", err)
		}
		select {
		case <-ctx.Done():
			return joinResponse{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// readJoinResponse reads the join service's answer; retry reports a
// refusal that may pass (the cluster is unavailable, or busy adding).
func readJoinResponse(resp *http.Response) (jr joinResponse, retry bool, err error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return joinResponse{}, true, err
	}
	msg := strings.TrimSpace(string(b))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusForbidden:
		return joinResponse{}, false, fmt.Errorf("%w: the cluster refuses it: %s", ErrBadToken, msg)
	default:
		return joinResponse{}, resp.StatusCode == http.StatusServiceUnavailable, fmt.Errorf("%w: %s (%s)", ErrRefused, msg, resp.Status)
	}
	if err := json.Unmarshal(b, &jr); err != nil {
		return joinResponse{}, false, fmt.Errorf("join service answer: %w", err)
	}
	return jr, false, nil
}

// verifyPinned accepts a chain whose leaf is signed by a CA in the chain
// with the pinned hash.
func verifyPinned(cs tls.ConnectionState, pin string) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrWrongCA
	}
	for _, c := range cs.PeerCertificates[1:] {
		if !c.IsCA || etcd.PinOf(c) != pin {
			continue
		}
		pool := x509.NewCertPool()
		pool.AddCert(c)
		if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool}); err == nil {
			return nil
		}
	}
	return ErrWrongCA
}

// RouteTo returns the local address of the route to hostport (no packet
// is sent).
func RouteTo(hostport string) (net.IP, error) {
	c, err := net.Dial("udp", hostport)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP, nil
}
