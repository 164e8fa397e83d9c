package dedup

// The peer-to-peer transport of outputs (#18): a leader serves its
// current output over HTTPS with a self-signed certificate whose
// fingerprint, and a secret, it publishes in its lock record; a follower
// pins the fingerprint, sends the secret and long-polls for an output
// whose hash differs from the one it has.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/store"
)

// peerPoll is how long the leader holds a long poll before 304.
const peerPoll = 30 * time.Second

// maxPeerBody bounds the gzipped body a follower reads from a peer.
const maxPeerBody = maxOutput

// Header names of a peer's answer.
const (
	hdrHash     = "X-Berth-Hash"
	hdrCount    = "X-Berth-Count"
	hdrRevision = "X-Berth-Revision"
)

// peerIdentity is a leader's TLS certificate, made at start and kept in
// memory, with its fingerprint and the secret followers must send.
type peerIdentity struct {
	cert        tls.Certificate
	fingerprint string // sha256 of the certificate's DER, hex
	secret      string // 32 random bytes, hex
}

func newPeerIdentity() (peerIdentity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return peerIdentity{}, fmt.Errorf("dedup peer key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return peerIdentity{}, fmt.Errorf("dedup peer serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "berth dedup"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return peerIdentity{}, fmt.Errorf("dedup peer certificate: %w", err)
	}
	var sec [32]byte
	if _, err := rand.Read(sec[:]); err != nil {
		return peerIdentity{}, fmt.Errorf("dedup peer secret: %w", err)
	}
	fp := sha256.Sum256(der)
	return peerIdentity{
		cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		fingerprint: hex.EncodeToString(fp[:]),
		secret:      hex.EncodeToString(sec[:]),
	}, nil
}

// serverTLS is the leader's TLS configuration.
func (p peerIdentity) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS13}
}

// pinnedTLS trusts exactly the certificate whose sha256 is fingerprint:
// the chain is not verified (it is self-signed), the pin is.
func pinnedTLS(fingerprint string) (*tls.Config, error) {
	want, err := hex.DecodeString(fingerprint)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: not a hex sha256", fingerprint)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("peer sent no certificate")
			}
			got := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("peer certificate fingerprint %x, want %s", got, fingerprint)
			}
			return nil
		},
	}, nil
}

// peerOutput is what a leader serves: its current output, gzipped.
type peerOutput struct {
	hash  string
	count int
	rev   store.Revision // of the data it was made from
	gzip  []byte
}

// peerServer is the leader's http.Handler of GET /dedup/<id>/output.
type peerServer struct {
	secret string
	poll   time.Duration

	mu      sync.Mutex
	outs    map[string]peerOutput        // by identity
	changed map[string]chan struct{}     // closed when outs[id] changes
	fetched map[string]map[string]string // by identity: follower host → the hash it last fetched
}

func newPeerServer(secret string) *peerServer {
	return &peerServer{secret: secret, poll: peerPoll, outs: map[string]peerOutput{},
		changed: map[string]chan struct{}{}, fetched: map[string]map[string]string{}}
}

// set makes o the output served for id and wakes the polls that wait.
func (s *peerServer) set(id string, o peerOutput) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outs[id] = o
	if c, ok := s.changed[id]; ok {
		close(c)
	}
	s.changed[id] = make(chan struct{})
}

// drop stops serving id (its leader stopped leading) and forgets who
// fetched it.
func (s *peerServer) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.outs, id)
	delete(s.fetched, id)
	if c, ok := s.changed[id]; ok {
		close(c)
		delete(s.changed, id)
	}
}

// fetchedBy reports the hash host last fetched of id ("" if none).
func (s *peerServer) fetchedBy(id, host string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetched[id][host]
}

func (s *peerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(s.secret)) != 1 {
		http.Error(w, "bad secret", http.StatusUnauthorized)
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/dedup/")
	id, ok2 := strings.CutSuffix(id, "/output")
	if !ok || !ok2 || id == "" || strings.Contains(id, "/") {
		http.NotFound(w, r)
		return
	}
	have, host := r.URL.Query().Get("have"), r.URL.Query().Get("host")
	timer := time.NewTimer(s.poll)
	defer timer.Stop()
	for {
		s.mu.Lock()
		o, ok := s.outs[id]
		c, cok := s.changed[id]
		if !cok {
			c = make(chan struct{})
			s.changed[id] = c
		}
		if ok && o.hash == have && host != "" {
			s.noteFetched(id, host, have)
		}
		s.mu.Unlock()
		if ok && o.hash != have {
			w.Header().Set(hdrHash, o.hash)
			w.Header().Set(hdrCount, strconv.Itoa(o.count))
			w.Header().Set(hdrRevision, strconv.FormatInt(int64(o.rev), 10))
			w.Header().Set("Content-Type", "application/gzip")
			// Fetched once the follower's next poll says it has it: a
			// write that succeeds here may still be held by the network.
			_, _ = w.Write(o.gzip)
			return
		}
		select {
		case <-c:
		case <-timer.C:
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// noteFetched records that host has hash of id; s.mu is held.
func (s *peerServer) noteFetched(id, host, hash string) {
	m := s.fetched[id]
	if m == nil {
		m = map[string]string{}
		s.fetched[id] = m
	}
	m[host] = hash
}

// peerClient is a follower's view of one leader, from its lock record.
type peerClient struct {
	url    string // https://host:port, the leader's
	secret string
	host   string // this follower's name, sent to the leader
	hc     *http.Client
}

func newPeerClient(base, fingerprint, secret, host string) (*peerClient, error) {
	if !strings.HasPrefix(base, "https://") || strings.ContainsAny(base[len("https://"):], "/?#@ ") || len(base) == len("https://") {
		return nil, fmt.Errorf("lock record: url %q: not https://host:port", base)
	}
	if len(secret) != 64 {
		return nil, fmt.Errorf("lock record: secret: %d characters, want 64", len(secret))
	}
	if _, err := hex.DecodeString(secret); err != nil {
		return nil, errors.New("lock record: secret: not hex")
	}
	tc, err := pinnedTLS(fingerprint)
	if err != nil {
		return nil, fmt.Errorf("lock record: %w", err)
	}
	// A leader that accepts and never answers is given the poll and 10 s;
	// a connection that goes silent (packets dropped) is found by HTTP/2
	// pings within 15 s, rather than by the end of the poll.
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: peerPoll + 10*time.Second,
		HTTP2: &http.HTTP2Config{SendPingTimeout: 10 * time.Second, PingTimeout: 5 * time.Second}}
	return &peerClient{url: base, secret: secret, host: host, hc: &http.Client{Transport: tr}}, nil
}

// errNotModified is a long poll that ended with no new output.
var errNotModified = errors.New("no new output")

// fetch long-polls the leader for an output of id whose hash is not have
// and checks it (size bound, gzip, hash) as an output from the store is.
func (c *peerClient) fetch(ctx context.Context, id, have string) (peerOutput, []byte, error) {
	u := c.url + "/dedup/" + url.PathEscape(id) + "/output?have=" + url.QueryEscape(have) + "&host=" + url.QueryEscape(c.host)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return peerOutput{}, nil, fmt.Errorf("dedup peer %s: %w", c.url, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	resp, err := c.hc.Do(req)
	if err != nil {
		return peerOutput{}, nil, fmt.Errorf("dedup peer %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return peerOutput{}, nil, errNotModified
	default:
		return peerOutput{}, nil, fmt.Errorf("dedup peer %s: status %s", c.url, resp.Status)
	}
	o := peerOutput{hash: resp.Header.Get(hdrHash)}
	if o.hash == "" {
		return o, nil, fmt.Errorf("dedup peer %s: no %s header", c.url, hdrHash)
	}
	if o.count, err = strconv.Atoi(resp.Header.Get(hdrCount)); err != nil || o.count < 0 {
		return o, nil, fmt.Errorf("dedup peer %s: header %s %q: not a count", c.url, hdrCount, resp.Header.Get(hdrCount))
	}
	rev, err := strconv.ParseInt(resp.Header.Get(hdrRevision), 10, 64)
	if err != nil || rev < 0 {
		return o, nil, fmt.Errorf("dedup peer %s: header %s %q: not a revision", c.url, hdrRevision, resp.Header.Get(hdrRevision))
	}
	o.rev = store.Revision(rev)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerBody+1))
	if err != nil {
		return o, nil, fmt.Errorf("dedup peer %s: %w", c.url, err)
	}
	if len(body) > maxPeerBody {
		return o, nil, fmt.Errorf("dedup peer %s: body larger than %d bytes", c.url, maxPeerBody)
	}
	out, err := unzip(body, o.hash)
	if err != nil {
		return o, nil, fmt.Errorf("dedup peer %s: %w", c.url, err)
	}
	o.gzip = body
	return o, out, nil
}

func (c *peerClient) close() { c.hc.CloseIdleConnections() }
