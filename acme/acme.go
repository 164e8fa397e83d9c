package acme

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// Defaults of Config.
const (
	DefaultRenewBefore = 30 * 24 * time.Hour
	DefaultRetryMin    = 5 * time.Minute
	DefaultRetryMax    = 24 * time.Hour
	DefaultTimeout     = 2 * time.Minute
	// leaderTTL is the lease of the leader key: a leader that dies leaves
	// the ordering to another host within it.
	leaderTTL = 15 * time.Second
	// leaderRetry is how often a host that is not the leader tries to
	// become it.
	leaderRetry = 5 * time.Second
	// maxSleep bounds the wait between two looks at the budget.
	maxSleep = time.Hour
	// maxParallelOrders is how many orders run at once.
	maxParallelOrders = 4
)

// Config configures a Manager.
type Config struct {
	// DirectoryURL is the ACME directory (Let's Encrypt's:
	// https://acme-v02.api.letsencrypt.org/directory).
	DirectoryURL string
	// Email is the default account's contact (LETSENCRYPT_EMAIL overrides
	// it per container, with an account of its own).
	Email string
	// Storage is the local storage directory (accounts, certificates,
	// budget); CertsDir is where <host>.crt and <host>.key are written.
	Storage, CertsDir string
	// CAFile, if set, is the only trust for the ACME server's TLS (a test
	// CA such as Pebble's); else the system's roots.
	CAFile string
	// RenewBefore is how long before expiry a certificate is renewed
	// (default 30 days; at most a third of the certificate's lifetime).
	RenewBefore time.Duration
	// RetryMin and RetryMax bound the backoff of failed orders (defaults
	// DefaultRetryMin, DefaultRetryMax): the n-th consecutive failure of a
	// name set, a registered domain or an account waits RetryMin·2^(n-1),
	// jittered ±20%.
	RetryMin, RetryMax time.Duration
	// Timeout bounds one order (default DefaultTimeout).
	Timeout time.Duration
	// Prefix is the key prefix (default records.DefaultPrefix); Host
	// names this host in the leader key.
	Prefix, Host string
}

// Option configures a Manager.
type Option func(*Manager)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithResponder sets the HTTP-01 responder (default NewResponder()).
func WithResponder(r *Responder) Option { return func(m *Manager) { m.resp = r } }

// Manager keeps certificates for the name sets the instance records ask
// for. Run it; serve Responder behind the proxy's challenge location.
type Manager struct {
	cfg     Config
	st      store.Store
	log     *slog.Logger
	resp    *Responder
	storage *storage
	owner   string
	policy  backoff
	client  *http.Client
	m       *metrics

	acctMu sync.Mutex     // held while an account is loaded or registered
	orders sync.WaitGroup // the orders running
	sem    chan struct{}  // bounds them (maxParallelOrders)
	kick   chan struct{}  // an order ended: reconcile

	mu       sync.Mutex
	budget   *budget
	accounts map[string]*account
	invalid  []Invalid
	reported map[string]bool   // invalid entries already logged
	served   map[string]Cert   // host → the certificate in CertsDir
	local    map[string]Cert   // main name → the local storage's certificate (zero: none)
	badCert  map[string]string // store key → why it is not written (logged once)
	leader   bool
	ordering map[string]bool // name sets being ordered
	changed  bool            // the budget changed since it was last shared
}

// poke makes Run reconcile soon.
func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// New returns a Manager over st (where certificates are shared and the
// leader key lives) and the instance records under cfg.Prefix. It opens
// the local storage; an order a crash interrupted counts as a failed one.
func New(st store.Store, cfg Config, opts ...Option) (*Manager, error) {
	if cfg.DirectoryURL == "" {
		return nil, errors.New("acme: no directory URL")
	}
	if cfg.Storage == "" || cfg.CertsDir == "" {
		return nil, errors.New("acme: storage and certs_dir are required")
	}
	cfg.RenewBefore = cmp.Or(cfg.RenewBefore, DefaultRenewBefore)
	cfg.RetryMin = cmp.Or(cfg.RetryMin, DefaultRetryMin)
	cfg.RetryMax = max(cmp.Or(cfg.RetryMax, DefaultRetryMax), cfg.RetryMin)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.Prefix = cmp.Or(cfg.Prefix, records.DefaultPrefix)
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	m := &Manager{cfg: cfg, st: st, log: slog.Default(), policy: backoff{cfg.RetryMin, cfg.RetryMax},
		accounts: map[string]*account{}, reported: map[string]bool{}, served: map[string]Cert{}, local: map[string]Cert{}, badCert: map[string]string{},
		ordering: map[string]bool{}, sem: make(chan struct{}, maxParallelOrders), kick: make(chan struct{}, 1)}
	for _, o := range opts {
		o(m)
	}
	if m.resp == nil {
		m.resp = NewResponder()
	}
	m.resp.share(st, records.Root(cfg.Prefix)+"acme/challenges/")
	var id [8]byte
	_, _ = rand.Read(id[:])
	m.owner = hex.EncodeToString(id[:])
	var err error
	if m.storage, err = openStorage(cfg.Storage); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.CertsDir, 0o755); err != nil {
		return nil, fmt.Errorf("acme certs_dir: %w", err)
	}
	if m.client, err = httpClient(cfg.CAFile); err != nil {
		return nil, err
	}
	if m.budget, err = m.storage.loadBudget(); err != nil {
		return nil, err
	}
	m.m = newMetrics(m)
	now := time.Now()
	interrupted := false
	for k, o := range m.budget.Orders {
		if o.InFlight.IsZero() {
			continue
		}
		interrupted = true
		started := o.InFlight
		o.InFlight = time.Time{}
		m.failOrder(o, now, fmt.Errorf("interrupted: berth stopped during the order it started at %s", started.Format(time.RFC3339)))
		m.m.orders.WithLabelValues("interrupted").Inc()
		m.log.Warn("an ACME order was interrupted by a stop; it is ordered again after its backoff", "names", k, "next", o.NextAt)
	}
	if interrupted {
		if err := m.storage.saveBudget(m.budget); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func httpClient(caFile string) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("acme ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("acme ca_file %s: no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}}, nil
}

// Responder is the HTTP-01 responder to serve behind the proxy.
func (m *Manager) Responder() *Responder { return m.resp }

func (m *Manager) certsPrefix() string { return records.Root(m.cfg.Prefix) + "acme/certs/" }
func (m *Manager) leaderKey() string   { return records.Root(m.cfg.Prefix) + "acme/leader" }
func (m *Manager) budgetKey() string   { return records.Root(m.cfg.Prefix) + "acme/budget" }

// Run keeps the certificates until ctx ends: it follows the instance
// records and the shared certificates (watcher mirrors), writes the
// certificate files, and, while this host is the leader, orders and renews
// within the budget. Failures are retried with backoff and reported in
// the log, the metrics and Status; Run returns only when ctx ends.
func (m *Manager) Run(ctx context.Context) {
	mopts := []watcher.MirrorOption{watcher.WithLogger(m.log)}
	services := watcher.NewMirror(m.st, records.ServicesPrefix(m.cfg.Prefix), mopts...)
	shared := watcher.NewMirror(m.st, m.certsPrefix(), mopts...)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { services.Run(ctx) })
	wg.Go(func() { shared.Run(ctx) })
	n1, c1 := services.Subscribe()
	defer c1()
	n2, c2 := shared.Subscribe()
	defer c2()
	for _, src := range []*watcher.Mirror{services, shared} {
		select {
		case <-src.Synced():
		case <-ctx.Done():
			return
		}
	}
	defer m.resign()
	defer m.orders.Wait() // before resigning; ctx has ended them
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-n1:
		case <-n2:
		case <-m.kick:
		case <-t.C:
		case <-ctx.Done():
			return
		}
		next := m.reconcile(ctx, services.Snapshot().KVs, shared.Snapshot().KVs)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(max(time.Until(next), 10*time.Millisecond))
	}
}

// reconcile writes the shared certificates to CertsDir and, as the
// leader, orders what is due; it returns when to look again.
func (m *Manager) reconcile(ctx context.Context, svcKVs, certKVs []store.KV) time.Time {
	shared := m.writeShared(certKVs)
	wants, invalid := wanted(svcKVs, m.cfg.Prefix, m.cfg.Email)
	m.report(invalid)
	now := time.Now()
	if !m.lead(ctx) {
		return now.Add(leaderRetry)
	}
	next := now.Add(maxSleep)
	dirty := false
	type dueOrder struct { // due and not being ordered
		w want
		o *orderState
	}
	var due []dueOrder
	for _, w := range wants {
		if ctx.Err() != nil {
			break
		}
		m.mu.Lock()
		o := m.budget.Orders[w.key()]
		if o == nil {
			o = &orderState{Names: w.names}
			m.budget.Orders[w.key()] = o
		}
		if now.Sub(o.LastSeen) > time.Hour {
			o.LastSeen, dirty = now, true
		}
		m.mu.Unlock()
		cur, ok := m.current(w, shared)
		if ok && now.Before(m.renewAt(cur)) {
			if err := m.publish(ctx, cur, shared); err != nil {
				m.log.Warn("cannot share a certificate in the store; retrying", "names", w.key(), "err", err)
				next = earliest(next, now.Add(m.cfg.RetryMin))
			}
			next = earliest(next, m.renewAt(cur))
			continue
		}
		m.mu.Lock()
		busy := m.ordering[w.key()]
		gate, why := m.gate(w, o, now)
		m.mu.Unlock()
		if busy {
			continue // its end looks again
		}
		if !gate.IsZero() {
			m.log.Debug("ACME order held back by the budget", "names", w.key(), "until", gate, "why", why)
			next = earliest(next, gate)
			continue
		}
		due = append(due, dueOrder{w, o})
	}
	// The due orders run in the background, a few at a time: one whose
	// validation hangs holds back no other, and the records keep being
	// followed meanwhile. Each one's end looks again.
	for _, d := range due {
		k := d.w.key()
		m.mu.Lock()
		m.ordering[k] = true
		m.mu.Unlock()
		m.orders.Go(func() {
			defer func() {
				m.mu.Lock()
				delete(m.ordering, k)
				m.mu.Unlock()
				m.poke()
			}()
			select {
			case m.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-m.sem }()
			c, err := m.order(ctx, d.w, d.o)
			if err != nil {
				return
			}
			if err := m.publish(ctx, c, nil); err != nil {
				m.log.Warn("cannot share a certificate in the store; retrying", "names", k, "err", err)
			}
		})
	}
	m.mu.Lock()
	for k, o := range m.budget.Orders {
		if now.Sub(o.LastSeen) > pruneAfter && o.InFlight.IsZero() {
			delete(m.budget.Orders, k)
			dirty = true
		}
	}
	var sharedBudget []byte
	if dirty || m.changed {
		m.changed = false
		if err := m.storage.saveBudget(m.budget); err != nil {
			m.log.Error("cannot save the ACME budget", "err", err)
		}
		sharedBudget, _ = json.Marshal(m.budget)
	}
	m.mu.Unlock()
	if sharedBudget != nil {
		// For the next leader: the budget follows the lead.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second) // also when stopping
		_, err := m.st.Put(pctx, m.budgetKey(), sharedBudget)
		cancel()
		if err != nil && !errors.Is(err, store.ErrReadOnly) {
			m.log.Warn("cannot share the ACME budget in the store", "key", m.budgetKey(), "err", err)
		}
	}
	return next
}

// adoptBudget merges the budget the previous leader shared into this
// host's, when it takes the lead.
func (m *Manager) adoptBudget(ctx context.Context) {
	kv, err := m.st.Get(ctx, m.budgetKey())
	if err != nil {
		return // none yet, or no store to share
	}
	var o budget
	if err := json.Unmarshal(kv.Value, &o); err != nil {
		m.log.Warn("the shared ACME budget does not read; keeping this host's", "key", m.budgetKey(), "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.budget.merge(&o, m.policy, time.Now())
	if err := m.storage.saveBudget(m.budget); err != nil {
		m.log.Error("cannot save the ACME budget", "err", err)
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// report logs each newly seen invalid name once and keeps the list.
func (m *Manager) report(invalid []Invalid) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.invalid = invalid
	for _, i := range invalid {
		if s := i.String(); !m.reported[s] {
			m.reported[s] = true
			m.log.Warn("not ordering a certificate for an invalid name", "container", i.Container, "field", i.Field, "name", i.Name, "reason", i.Reason)
		}
	}
}

// gate is when w may be ordered next (zero: now) and why not before.
func (m *Manager) gate(w want, o *orderState, now time.Time) (time.Time, string) {
	var at time.Time
	why := ""
	later := func(t time.Time, what string) {
		if t.After(now) && t.After(at) {
			at, why = t, what
		}
	}
	later(o.NextAt, "the name set's last order failed: "+o.LastError)
	for _, n := range w.names {
		if d := m.budget.Domains[registeredDomain(n)]; d != nil {
			later(d.NextAt, "registered domain "+registeredDomain(n)+": "+d.LastError)
		}
	}
	if a := m.budget.Accounts[w.email]; a != nil {
		later(a.NextAt, "account "+cmp.Or(w.email, "(default)")+": "+a.LastError)
	}
	return at, why
}

// renewAt is when c is renewed: RenewBefore before it expires (at most a
// third of its lifetime), earlier by up to a tenth of that, the same for
// the same certificate.
func (m *Manager) renewAt(c Cert) time.Time {
	life := c.NotAfter.Sub(c.Issued)
	before := min(m.cfg.RenewBefore, life/3)
	h := fnv.New32a()
	h.Write([]byte(c.CertPEM))
	jitter := time.Duration(float64(before/10) * float64(h.Sum32()%1000) / 1000)
	return c.NotAfter.Add(-before - jitter)
}

// current is w's certificate: the newer valid one of the local storage's
// and the store's, for exactly w's names.
func (m *Manager) current(w want, shared map[string]Cert) (Cert, bool) {
	var best Cert
	ok := false
	consider := func(c Cert) {
		if !slices.Equal(c.Names, w.names) || time.Now().After(c.NotAfter) {
			return
		}
		if _, err := c.leaf(); err != nil {
			return
		}
		if !ok || c.NotAfter.After(best.NotAfter) {
			best, ok = c, true
		}
	}
	m.mu.Lock()
	c, cached := m.local[w.names[0]]
	m.mu.Unlock()
	if !cached {
		var err error
		if c, err = m.storage.loadCert(w.names[0]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("a stored certificate does not read; it is ordered again", "names", w.key(), "err", err)
		}
		m.mu.Lock()
		m.local[w.names[0]] = c // the zero Cert: none
		m.mu.Unlock()
	}
	if c.CertPEM != "" {
		consider(c)
	}
	if c, found := shared[w.names[0]]; found {
		consider(c)
	}
	return best, ok
}

// account returns email's account, registered with the CA.
func (m *Manager) account(ctx context.Context, email string) (*account, *lego.Client, error) {
	// One at a time: two orders of one account must not register it twice.
	m.acctMu.Lock()
	defer m.acctMu.Unlock()
	m.mu.Lock()
	a := m.accounts[email]
	m.mu.Unlock()
	if a == nil {
		var err error
		if a, err = m.storage.loadAccount(email); err != nil {
			return nil, nil, err
		}
		m.mu.Lock()
		m.accounts[email] = a
		m.mu.Unlock()
	}
	lc := lego.NewConfig(a)
	lc.CADirURL = m.cfg.DirectoryURL
	// A client of its own: lego wraps its Transport (the shared one stays
	// as it is).
	hc := *m.client
	lc.HTTPClient = &hc
	lc.UserAgent = "berth"
	lc.Certificate.Timeout = m.cfg.Timeout
	client, err := lego.NewClient(lc) // reads the directory
	if err != nil {
		return nil, nil, fmt.Errorf("ACME directory %s: %w", m.cfg.DirectoryURL, err)
	}
	if a.Registration == nil {
		reg, err := client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return nil, nil, fmt.Errorf("ACME account registration: %w", err)
		}
		a.Registration = reg
		if err := m.storage.saveAccount(a); err != nil {
			return nil, nil, err
		}
		m.log.Info("ACME account registered", "email", email, "account", reg.Location)
		// A client made with the registration signs with its URL.
		hc := *m.client
		lc.HTTPClient = &hc
		if client, err = lego.NewClient(lc); err != nil {
			return nil, nil, fmt.Errorf("ACME directory %s: %w", m.cfg.DirectoryURL, err)
		}
	}
	if err := client.Challenge.SetHTTP01Provider(m.resp); err != nil {
		return nil, nil, err
	}
	return a, client, nil
}

// order orders a certificate for w and stores it locally. The order is
// marked in flight in the budget (durably) before it leaves, so a crash
// during it counts as a failure at the next start.
func (m *Manager) order(ctx context.Context, w want, o *orderState) (Cert, error) {
	now := time.Now()
	_, client, err := m.account(ctx, w.email)
	if err != nil {
		// Nothing was ordered: the account (the CA as a whole) backs off.
		m.mu.Lock()
		a := m.accountState(w.email)
		a.fail(m.policy, now, err, 0)
		m.changed = true
		m.mu.Unlock()
		m.m.failures.WithLabelValues("account").Inc()
		m.log.Warn("ACME CA unusable; retrying with backoff (plain HTTP is not affected)", "names", w.key(), "next", a.NextAt, "err", err)
		return Cert{}, err
	}
	m.mu.Lock()
	o.InFlight, o.Names, o.Email = now, w.names, w.email
	o.Orders++
	err = m.storage.saveBudget(m.budget)
	m.mu.Unlock()
	if err != nil {
		return Cert{}, fmt.Errorf("ACME budget: %w", err)
	}
	m.m.orders.WithLabelValues("started").Inc()
	m.log.Info("ordering a certificate", "names", w.key(), "order", o.Orders)
	octx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	res, err := client.Certificate.Obtain(octx, certificate.ObtainRequest{Domains: w.names, Bundle: true, KeyType: certcrypto.EC256})
	cancel()
	var c Cert
	if err == nil {
		c, err = certOf(w.names, res)
	}
	if err == nil {
		err = m.storage.saveCert(c)
	}
	if err == nil {
		m.mu.Lock()
		m.local[c.Names[0]] = c
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ctx.Err() != nil && err != nil {
		// Stopping: leave the order in flight; the next start counts it.
		return Cert{}, err
	}
	defer func() {
		m.changed = true
		if err := m.storage.saveBudget(m.budget); err != nil {
			m.log.Error("cannot save the ACME budget", "err", err)
		}
	}()
	o.InFlight = time.Time{}
	if err != nil {
		m.failOrder(o, now, err)
		m.m.orders.WithLabelValues("failed").Inc()
		m.log.Warn("ACME order failed; backing off", "names", w.key(), "failures", o.Failures, "next", o.NextAt, "err", err)
		return Cert{}, err
	}
	o.ok()
	o.LastOK = time.Now()
	for _, n := range w.names {
		delete(m.budget.Domains, registeredDomain(n))
	}
	m.accountState(w.email).ok()
	m.m.orders.WithLabelValues("issued").Inc()
	m.log.Info("certificate issued", "names", w.key(), "not_after", c.NotAfter)
	return c, nil
}

// failOrder counts a failed (or interrupted) order against its name set,
// its registered domains and its account (under mu). The account backs
// off after accountFreeFailures consecutive failed orders (of any names;
// an issued certificate resets it).
func (m *Manager) failOrder(o *orderState, now time.Time, err error) {
	o.fail(m.policy, now, err, 0)
	m.accountState(o.Email).fail(m.policy, now, err, accountFreeFailures)
	seen := map[string]bool{}
	for _, n := range o.Names {
		d := registeredDomain(n)
		if seen[d] {
			continue
		}
		seen[d] = true
		s := m.budget.Domains[d]
		if s == nil {
			s = &backoffState{}
			m.budget.Domains[d] = s
		}
		s.fail(m.policy, now, err, 0)
	}
	m.m.failures.WithLabelValues("order").Inc()
}

func (m *Manager) accountState(email string) *backoffState {
	a := m.budget.Accounts[email]
	if a == nil {
		a = &backoffState{}
		m.budget.Accounts[email] = a
	}
	return a
}

func certOf(names []string, res *certificate.Resource) (Cert, error) {
	if res == nil {
		return Cert{}, errors.New("no certificate in the CA's answer")
	}
	c := Cert{Names: names, CertPEM: string(res.Certificate), KeyPEM: string(res.PrivateKey), Issued: time.Now()}
	leaf, err := c.leaf()
	if err != nil {
		return Cert{}, fmt.Errorf("the CA's certificate: %w", err)
	}
	c.NotAfter = leaf.NotAfter
	if leaf.NotBefore.Before(c.Issued) {
		c.Issued = leaf.NotBefore
	}
	return c, nil
}

// publish puts c in the store under each of its names (where it differs),
// from where every host writes it to its CertsDir. A read-only store
// (nothing to share) gets the files written directly.
func (m *Manager) publish(ctx context.Context, c Cert, shared map[string]Cert) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	for _, n := range c.Names {
		if s, ok := shared[n]; ok && s.CertPEM == c.CertPEM && s.KeyPEM == c.KeyPEM {
			continue
		}
		if _, err := m.st.Put(ctx, m.certsPrefix()+n, b); err != nil {
			if errors.Is(err, store.ErrReadOnly) {
				if err := m.writeFiles(n, c); err != nil {
					return err
				}
				continue
			}
			return err
		}
	}
	return nil
}

// writeShared writes every certificate of the store to CertsDir and
// returns them by host. One that is not valid is reported once and left
// out; its file, if any, stays.
func (m *Manager) writeShared(kvs []store.KV) map[string]Cert {
	out := map[string]Cert{}
	for _, kv := range kvs {
		host := strings.TrimPrefix(kv.Key, m.certsPrefix())
		var c Cert
		err := CheckName(host)
		if err == nil {
			err = json.Unmarshal(kv.Value, &c)
		}
		if err == nil && !slices.Contains(c.Names, host) {
			err = fmt.Errorf("its names %v do not include %s", c.Names, host)
		}
		if err == nil {
			_, err = c.leaf()
		}
		if err == nil {
			err = m.writeFiles(host, c)
		}
		m.mu.Lock()
		if err != nil {
			if m.badCert[kv.Key] != err.Error() {
				m.badCert[kv.Key] = err.Error()
				m.log.Error("a shared certificate is not written", "key", kv.Key, "err", err)
			}
		} else {
			delete(m.badCert, kv.Key)
			out[host] = c
		}
		m.mu.Unlock()
	}
	return out
}

// writeFiles writes host's key (0600) and certificate into CertsDir, the
// key first: the certificate store picks up the pair when the .crt
// changes.
func (m *Manager) writeFiles(host string, c Cert) error {
	m.mu.Lock()
	s, ok := m.served[host]
	m.mu.Unlock()
	if ok && s.CertPEM == c.CertPEM && s.KeyPEM == c.KeyPEM {
		return nil // written already
	}
	if err := writeFile(filepath.Join(m.cfg.CertsDir, host+".key"), []byte(c.KeyPEM), 0o600); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(m.cfg.CertsDir, host+".crt"), []byte(c.CertPEM), 0o644); err != nil {
		return err
	}
	m.mu.Lock()
	m.served[host] = c
	m.mu.Unlock()
	return nil
}

// leaderRecord is the value of the leader key.
type leaderRecord struct {
	Host  string    `json:"host"`
	Owner string    `json:"owner"`
	Since time.Time `json:"since"`
}

// lead reports whether this Manager is the ACME leader, claiming the
// leader key if it is free: a create-only put bound to the store's lease
// (store.Create with a TTL, as deploy's lock), so exactly one of the
// hosts sharing the store orders, and a leader that dies hands over
// within leaderTTL. A read-only store has no one to share with: this
// Manager leads.
func (m *Manager) lead(ctx context.Context) bool {
	key := m.leaderKey()
	m.mu.Lock()
	was := m.leader
	m.mu.Unlock()
	if was {
		kv, err := m.st.Get(ctx, key)
		var l leaderRecord
		if err == nil && json.Unmarshal(kv.Value, &l) == nil && l.Owner == m.owner {
			return true
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return false // the store is away: no ordering meanwhile
		}
		m.setLeader(false)
		m.log.Warn("lost the ACME leader key (its lease ran out?); claiming it again", "key", key)
	}
	b, _ := json.Marshal(leaderRecord{Host: m.cfg.Host, Owner: m.owner, Since: time.Now()})
	_, err := m.st.Txn(ctx, store.Create(key, b, store.WithTTL(leaderTTL)))
	switch {
	case err == nil, errors.Is(err, store.ErrReadOnly):
		m.setLeader(true)
		m.log.Info("this host is the ACME leader", "key", key)
		m.adoptBudget(ctx)
		return true
	case !errors.Is(err, store.ErrExists):
		m.log.Debug("cannot claim the ACME leader key", "key", key, "err", err)
	}
	return false
}

func (m *Manager) setLeader(v bool) {
	m.mu.Lock()
	m.leader = v
	m.mu.Unlock()
}

// resign deletes the leader key if it is still this Manager's.
func (m *Manager) resign() {
	m.mu.Lock()
	was := m.leader
	m.leader = false
	m.mu.Unlock()
	if !was {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var l leaderRecord
	if kv, err := m.st.Get(ctx, m.leaderKey()); err == nil && json.Unmarshal(kv.Value, &l) == nil && l.Owner == m.owner {
		_, _ = m.st.Delete(ctx, m.leaderKey())
	}
}
