package etcd

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// An embedded store can be one member of a cluster of embedded stores
// (package cluster builds it). Its place in the cluster is kept in
// Dir/cluster.json (Member); the cluster's credentials in Dir/tls beside the
// local ones:
//
//   - cluster-ca.crt, cluster-ca.key: the cluster CA, created by the first
//     member and handed to every member that joins (so any member can admit
//     the next one);
//   - peer.crt, peer.key: this member's peer certificate, for its advertise
//     address, signed by the cluster CA. Members accept peers only with a
//     certificate of that CA.
//
// The client port stays on 127.0.0.1 with the local CA: every host's
// clients talk to their own member, which forwards to the leader over the
// peer connections.
const (
	memberFile        = "cluster.json"
	clusterCACertName = "cluster-ca.crt"
	clusterCAKeyName  = "cluster-ca.key"
	peerCertName      = "peer.crt"
	peerKeyName       = "peer.key"
)

// Member is the place of an embedded store in a cluster, kept in
// Dir/cluster.json. Embedded serves a directory with a Member as that
// member: named Name, listening for peers on PeerURL (and advertising it),
// with the cluster's peer TLS.
type Member struct {
	Name    string `json:"name"`     // the member's name: the host's name
	PeerURL string `json:"peer_url"` // https://ADVERTISE:PORT
	// InitialCluster ("name=url,...") and State ("new" or "existing") are
	// read at the first start only (an existing data dir has the
	// membership).
	InitialCluster string `json:"initial_cluster"`
	State          string `json:"state"`
	// ClientURL (https://ADVERTISE:PORT), if set, is a second client
	// listener, for the cluster's clients on other hosts (Remote). Its
	// clients need a certificate of the cluster CA, which then is this
	// store's CA for its local clients too.
	ClientURL string `json:"client_url,omitempty"`
}

// Remote makes an embedded store's directory the credentials of a client
// of a cluster on other hosts, kept in Dir/remote.json: a host beyond the
// cluster's voting members. Embedded opens such a directory as a client of
// Endpoints, with the certificate in Dir/tls (client.crt, from the cluster
// CA, whose key it does not hold).
type Remote struct {
	Endpoints []string `json:"endpoints"`
}

const remoteFile = "remote.json"

// ReadRemote returns the Remote kept in storeDir; ok is false when there is
// none.
func ReadRemote(storeDir string) (r Remote, ok bool, err error) {
	path := filepath.Join(storeDir, remoteFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Remote{}, false, nil
	}
	if err != nil {
		return Remote{}, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.Endpoints) == 0 {
		return Remote{}, false, fmt.Errorf("%s: not a list of endpoints (%v)", path, err)
	}
	return r, true, nil
}

// WriteRemote makes storeDir a client of r's endpoints, with the cluster
// CA's certificate caCert and a client certificate (PEM) for key; a
// member's own state (cluster.json) is removed.
func WriteRemote(storeDir string, r Remote, caCert, cert []byte, key *ecdsa.PrivateKey) error {
	creds := credentialsIn(storeDir)
	if err := os.MkdirAll(creds.dir, 0o700); err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if _, err := tls.X509KeyPair(cert, keyPEM); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{creds.ca, caCert}, {creds.clientKey, keyPEM}, {creds.client, cert}} {
		if err := writeFileAtomic(f.path, f.data, 0o600); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(storeDir, memberFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	return writeFileAtomic(filepath.Join(storeDir, remoteFile), append(b, '\n'), 0o600)
}

// adoptCA makes the cluster CA the store's CA for its local clients too
// (its clients on other hosts present certificates of the cluster CA, and
// a client port trusts one CA): the server's and client's certificates are
// then made again by credentials.ensure.
func (p ClusterPKI) adoptCA(c credentials) error {
	cert, key, err := p.CA()
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	if old, err := os.ReadFile(c.ca); err == nil && bytes.Equal(old, cert) {
		return nil
	}
	if err := writeFileAtomic(c.caKey, key, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(c.ca, cert, 0o600)
}

// clientIP is the address of m's ClientURL (nil: none).
func (m Member) clientIP() net.IP {
	u, err := url.Parse(m.ClientURL)
	if err != nil || m.ClientURL == "" {
		return nil
	}
	return net.ParseIP(u.Hostname())
}

// Member states of Member.State.
const (
	StateNew      = "new"
	StateExisting = "existing"
)

// ReadMember returns the Member kept in storeDir; ok is false when the
// store is not a cluster member.
func ReadMember(storeDir string) (m Member, ok bool, err error) {
	path := filepath.Join(storeDir, memberFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Member{}, false, nil
	}
	if err != nil {
		return Member{}, false, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Member{}, false, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.check(); err != nil {
		return Member{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return m, true, nil
}

// WriteMember keeps m in storeDir (atomically, mode 0600).
func WriteMember(storeDir string, m Member) error {
	if err := m.check(); err != nil {
		return err
	}
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return writeFileAtomic(filepath.Join(storeDir, memberFile), append(b, '\n'), 0o600)
}

func (m Member) check() error {
	if m.Name == "" {
		return errors.New("member: no name")
	}
	u, err := url.Parse(m.PeerURL)
	if err != nil || u.Scheme != "https" || net.ParseIP(u.Hostname()) == nil || u.Port() == "" {
		return fmt.Errorf("member %s: peer URL %q: want https://IP:PORT", m.Name, m.PeerURL)
	}
	if m.ClientURL != "" {
		if u, err := url.Parse(m.ClientURL); err != nil || u.Scheme != "https" || net.ParseIP(u.Hostname()) == nil || u.Port() == "" {
			return fmt.Errorf("member %s: client URL %q: want https://IP:PORT", m.Name, m.ClientURL)
		}
	}
	if m.State != StateNew && m.State != StateExisting {
		return fmt.Errorf("member %s: state %q: want %s or %s", m.Name, m.State, StateNew, StateExisting)
	}
	return nil
}

// HasData reports whether storeDir holds a server's data (a member that
// has started once).
func HasData(storeDir string) bool {
	_, err := os.Stat(filepath.Join(storeDir, dataDir, "member"))
	return err == nil
}

// MoveDataAside renames storeDir's data to data.<unix time> (a member that
// was removed from its cluster starts again from nothing when it rejoins;
// the old data stays for inspection). No data: nothing happens.
func MoveDataAside(storeDir string, now time.Time) (string, error) {
	from := filepath.Join(storeDir, dataDir)
	if _, err := os.Stat(from); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	to := fmt.Sprintf("%s.%d", from, now.Unix())
	return to, os.Rename(from, to)
}

// ClusterPKI is the cluster's credentials in an embedded store's Dir/tls.
type ClusterPKI struct {
	ca, caKey, peer, peerKey string
}

// ClusterPKIIn returns the cluster credentials of the store in storeDir.
func ClusterPKIIn(storeDir string) ClusterPKI {
	d := filepath.Join(storeDir, tlsDirName)
	return ClusterPKI{
		ca: filepath.Join(d, clusterCACertName), caKey: filepath.Join(d, clusterCAKeyName),
		peer: filepath.Join(d, peerCertName), peerKey: filepath.Join(d, peerKeyName),
	}
}

// InitCA creates the cluster CA unless there is a valid one.
func (p ClusterPKI) InitCA(now time.Time) error {
	if err := os.MkdirAll(filepath.Dir(p.ca), 0o700); err != nil {
		return err
	}
	if ca, _, err := loadPair(p.ca, p.caKey); err == nil && ca.IsCA && now.Add(certRenewBefore).Before(ca.NotAfter) {
		return nil
	}
	ca, key, err := newCA(now)
	if err != nil {
		return err
	}
	return writePair(p.ca, p.caKey, ca, key)
}

// CA returns the cluster CA's certificate and key, PEM-encoded.
func (p ClusterPKI) CA() (cert, key []byte, err error) {
	if cert, err = os.ReadFile(p.ca); err != nil {
		return nil, nil, err
	}
	if key, err = os.ReadFile(p.caKey); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// Pin is the hex SHA-256 of the cluster CA certificate (DER): what a join
// token names, so that a joiner trusts only this cluster.
func (p ClusterPKI) Pin() (string, error) {
	ca, _, err := loadPair(p.ca, p.caKey)
	if err != nil {
		return "", err
	}
	return PinOf(ca), nil
}

// PinOf is the hex SHA-256 of a certificate's DER.
func PinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Issue signs a peer certificate for the member name at ip, for the public
// key pub, with the cluster CA; it returns the certificate in PEM.
func (p ClusterPKI) Issue(name string, ip net.IP, pub crypto.PublicKey, now time.Time) ([]byte, error) {
	ca, caKey, err := loadPair(p.ca, p.caKey)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	ecPub, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("peer key: not an ECDSA public key")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		IPAddresses: []net.IP{ip},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		// A peer is a server to some members and a client of others.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	cert, err := sign(tmpl, ca, ecPub, caKey, now)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), nil
}

// IssueSelf gives this member a peer certificate for ip from the cluster
// CA it holds.
func (p ClusterPKI) IssueSelf(name string, ip net.IP, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	cert, err := p.Issue(name, ip, &key.PublicKey, now)
	if err != nil {
		return err
	}
	return p.InstallPeer(cert, key)
}

// NewPeerKey returns a new key for a peer certificate.
func NewPeerKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// Install keeps the cluster CA (certificate and key, PEM) a joining member
// received.
func (p ClusterPKI) Install(caCert, caKey []byte) error {
	if _, err := tls.X509KeyPair(caCert, caKey); err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p.ca), 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(p.caKey, caKey, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(p.ca, caCert, 0o600)
}

// InstallPeer keeps this member's peer certificate (PEM) and its key.
func (p ClusterPKI) InstallPeer(cert []byte, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if _, err := tls.X509KeyPair(cert, keyPEM); err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	if err := writeFileAtomic(p.peerKey, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(p.peer, cert, 0o600)
}

// ServerTLS is the TLS configuration of a member's join service: its peer
// certificate, with the cluster CA in the chain so that a joiner can check
// it against the pin in its token.
func (p ClusterPKI) ServerTLS() (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(p.peer, p.peerKey)
	if err != nil {
		return nil, fmt.Errorf("peer certificate: %w", err)
	}
	ca, _, err := loadPair(p.ca, p.caKey)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	pair.Certificate = append(pair.Certificate, ca.Raw)
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// configure makes ecfg serve this member: its name, its peer URL (listened
// on and advertised), the cluster's peer TLS and, for a first start, the
// initial cluster.
func (m Member) configure(ecfg *embed.Config, p ClusterPKI) error {
	u, err := url.Parse(m.PeerURL)
	if err != nil {
		return err
	}
	for _, f := range []string{p.ca, p.peer, p.peerKey} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("member %s: cluster credentials: %w", m.Name, err)
		}
	}
	ecfg.Name = m.Name
	ecfg.ListenPeerUrls = []url.URL{*u}
	ecfg.AdvertisePeerUrls = []url.URL{*u}
	ecfg.PeerTLSInfo = transport.TLSInfo{CertFile: p.peer, KeyFile: p.peerKey, TrustedCAFile: p.ca, ClientCertAuth: true}
	ecfg.InitialCluster = m.InitialCluster
	if ecfg.InitialCluster == "" {
		ecfg.InitialCluster = m.Name + "=" + m.PeerURL
	}
	ecfg.ClusterState = m.State
	ecfg.InitialClusterToken = "berth"
	if m.ClientURL != "" {
		cu, err := url.Parse(m.ClientURL)
		if err != nil {
			return err
		}
		ecfg.ListenClientUrls = append(ecfg.ListenClientUrls, *cu)
		ecfg.AdvertiseClientUrls = append(ecfg.AdvertiseClientUrls, *cu)
	}
	return nil
}

// advertise makes the cluster know this member at m.PeerURL: a store that
// served alone before (its peer URL on 127.0.0.1) keeps its data and
// becomes the first member of a cluster.
func (m Member) advertise(ctx context.Context, cli *clientv3.Client, id uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("member %s: list members: %w", m.Name, err)
	}
	for _, mm := range resp.Members {
		if mm.ID != id {
			continue
		}
		if len(mm.PeerURLs) == 1 && mm.PeerURLs[0] == m.PeerURL {
			return nil
		}
		if _, err := cli.MemberUpdate(ctx, id, []string{m.PeerURL}); err != nil {
			return fmt.Errorf("member %s: advertise %s: %w", m.Name, m.PeerURL, err)
		}
		return nil
	}
	return fmt.Errorf("member %s: not in its own cluster's member list", m.Name)
}
