package dedup

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/templates"
	"github.com/berthd/berth/watcher"
)

// DefaultPrefix is where the dedup keys live: <prefix><id>/leader and
// <prefix><id>/output.
const DefaultPrefix = "/berth/dedup/"

// DefaultTTL is the lease of a leader's lock when WithTTL is not given.
const DefaultTTL = 15 * time.Second

// keyPrefix marks the runner source keys Key makes.
const keyPrefix = "dedup:"

// Deduper makes the dedup sources of one daemon. It is safe for
// concurrent use.
type Deduper struct {
	st     store.Store
	log    *slog.Logger
	ttl    time.Duration
	prefix string
	host   string
	owner  string // this Deduper's identity in the locks and outputs it writes
	mopts  []watcher.MirrorOption
	peer   *peerSide // nil: outputs go through the store alone
	grace  time.Duration

	mu    sync.Mutex
	confs map[string]config.Template // by identity: the template Key was given first
}

// Option configures a Deduper.
type Option func(*Deduper)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(d *Deduper) { d.log = l } }

// WithTTL sets the lease of the leader's lock: a dead leader hands over
// within it (default DefaultTTL; the store rounds it up to its minimum).
func WithTTL(ttl time.Duration) Option { return func(d *Deduper) { d.ttl = ttl } }

// WithPrefix sets where the dedup keys live (default DefaultPrefix).
func WithPrefix(p string) Option { return func(d *Deduper) { d.prefix = p } }

// WithHost names this daemon's host in the lock and outputs it writes.
func WithHost(h string) Option { return func(d *Deduper) { d.host = h } }

// WithMirrorOptions passes options to the mirrors of the dedup keys and,
// while leading, of the data prefixes.
func WithMirrorOptions(o ...watcher.MirrorOption) Option {
	return func(d *Deduper) { d.mopts = append(d.mopts, o...) }
}

// WithPeers makes this daemon's leaders serve their outputs to the
// followers directly, on ln (TLS, a certificate pinned by its fingerprint
// and a secret, both published in the lock record), so that a change
// costs the store only the leader's data watch: the leader stores an
// output only for a registered follower that has not fetched it within
// the grace (WithPeerGrace). Followers reach ln at advertise ("host:port"; empty: ln's
// own address, which must then be one they can reach). Run serves ln.
func WithPeers(ln net.Listener, advertise string) Option {
	return func(d *Deduper) {
		if advertise == "" {
			advertise = ln.Addr().String()
		}
		d.peer = &peerSide{ln: ln, url: "https://" + advertise}
	}
}

// WithPeerGrace sets how long a leader serving peer to peer waits for
// its registered followers to fetch an output before it stores it for
// those that did not (default DefaultPeerGrace).
func WithPeerGrace(g time.Duration) Option { return func(d *Deduper) { d.grace = g } }

// DefaultPeerGrace is the grace of WithPeerGrace when it is not given.
const DefaultPeerGrace = time.Second

// peerSide is a Deduper's peer-to-peer transport: its listener, the URL
// followers reach it at, its identity and the server of its outputs.
type peerSide struct {
	ln  net.Listener
	url string
	id  peerIdentity
	srv *peerServer
}

// New returns a Deduper over st.
func New(st store.Store, opts ...Option) *Deduper {
	var b [12]byte
	_, _ = rand.Read(b[:])
	d := &Deduper{st: st, log: slog.Default(), ttl: DefaultTTL, prefix: DefaultPrefix, grace: DefaultPeerGrace,
		owner: hex.EncodeToString(b[:]), confs: map[string]config.Template{}}
	for _, f := range opts {
		f(d)
	}
	if !strings.HasSuffix(d.prefix, "/") {
		d.prefix += "/"
	}
	if d.host == "" {
		d.host, _ = os.Hostname()
	}
	if d.peer != nil {
		id, err := newPeerIdentity()
		if err != nil {
			d.log.Error("dedup: outputs go through the store alone", "err", err)
			d.peer = nil
		} else {
			d.peer.id, d.peer.srv = id, newPeerServer(id.secret)
		}
	}
	return d
}

// Run serves the leaders' outputs to the followers on the listener of
// WithPeers until ctx ends, and then closes it (its long polls with it).
// Without WithPeers it only waits for ctx. Followers that cannot reach it
// take the outputs from the store, later.
func (d *Deduper) Run(ctx context.Context) error {
	if d.peer == nil {
		<-ctx.Done()
		return nil
	}
	hs := &http.Server{
		Handler:           d.peer.srv,
		TLSConfig:         d.peer.id.serverTLS(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() { hs.Close() })
	defer stop()
	err := hs.ServeTLS(d.peer.ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("dedup peers on %s: %w", d.peer.ln.Addr(), err)
}

// Owner is this Deduper's identity in the locks and outputs it writes.
func (d *Deduper) Owner() string { return d.owner }

// Key is the runner source key of t's dedup source, "dedup:<identity>".
// A template dedup cannot serve is refused, naming why: a live one (a
// follower has no records to build its endpoint set from), one without
// store prefixes, and one that reads only dedup keys. A prefix that covers
// the dedup keys ("/berth/", the native dialect's default) is fine: the
// leader's data leaves them out, so that its output is never its input.
func (d *Deduper) Key(t config.Template) (string, error) {
	if t.Live != "" {
		return "", fmt.Errorf("%s: template %q: dedup cannot serve a live template", t.Origin, t.Name)
	}
	if len(t.Prefixes) == 0 {
		return "", fmt.Errorf("%s: template %q: dedup needs the store prefixes the template reads", t.Origin, t.Name)
	}
	for _, p := range t.Prefixes {
		if strings.HasPrefix(p, d.prefix) {
			return "", fmt.Errorf("%s: template %q: its prefix %s is inside the dedup keys (%s): its output would be its own input", t.Origin, t.Name, p, d.prefix)
		}
	}
	id, err := Identity(t)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	if _, ok := d.confs[id]; !ok {
		d.confs[id] = t
	}
	d.mu.Unlock()
	return keyPrefix + id, nil
}

// IsKey reports whether a runner source key is one Key made.
func IsKey(key string) bool { return strings.HasPrefix(key, keyPrefix) }

// Open makes the source of a key Key made (the runner runs it).
func (d *Deduper) Open(key string) *Source {
	id := strings.TrimPrefix(key, keyPrefix)
	d.mu.Lock()
	conf := d.confs[id]
	d.mu.Unlock()
	return newSource(d, id, conf)
}

// Identity is what two templates must share to share an output: the text
// of the template and of its includes (by base name, as templates name
// each other), the parse options that change output, and the prefixes,
// hashed. Paths, destinations and commands are each host's own.
func Identity(t config.Template) (string, error) {
	h := sha256.New()
	o := t.Options
	fmt.Fprintf(h, "berth-dedup-1\x00%s\x00%t\x00%t\x00%t\x00%s\x00%q\x00",
		o.Dialect, o.MissingKeyError, o.AllowNondeterministic, o.KeepBlankLines, o.Prefix, t.Prefixes)
	for _, f := range append([]string{t.Src}, o.Includes...) {
		text, err := readTemplate(f)
		if err != nil {
			return "", fmt.Errorf("%s: template %q: dedup identity: %w", t.Origin, t.Name, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(text))
		h.Write(text)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

func readTemplate(path string) ([]byte, error) {
	if _, text, ok, err := templates.Builtin(path); ok {
		return text, err
	}
	return os.ReadFile(path)
}

// lockRecord is the value of the leader key. URL, Fingerprint and
// Secret are there when the leader serves its outputs peer to peer.
type lockRecord struct {
	Owner       string    `json:"owner"`
	Host        string    `json:"host"`
	Since       time.Time `json:"since"`
	URL         string    `json:"url,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Secret      string    `json:"secret,omitempty"`
}

// followerRecord is the value of <prefix><id>/followers/<owner>: a
// follower that takes the outputs peer to peer, bound to its lease. The
// leader stores an output for the registered followers that did not
// fetch it.
type followerRecord struct {
	Owner string    `json:"owner"`
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
}

// record is the value of the output key: what the leader applied.
type record struct {
	Owner    string         `json:"owner"`
	Host     string         `json:"host"`
	Hash     string         `json:"hash"`  // sha256 of the output, hex
	Count    int            `json:"count"` // the records its guards counted
	Revision store.Revision `json:"revision"`
	Gzip     []byte         `json:"gzip"` // the output, gzipped
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// zip is out gzipped.
func zip(out []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(out); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// maxOutput bounds a stored output as it is decompressed.
const maxOutput = 64 << 20

// decode reads an output record and checks its hash.
func decode(b []byte) (record, []byte, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return r, nil, fmt.Errorf("not an output record: %w", err)
	}
	out, err := unzip(r.Gzip, r.Hash)
	return r, out, err
}

// unzip decompresses a gzipped output, bounded by maxOutput, and checks
// it against its hash: the one check of an output, from the store or a
// peer.
func unzip(gz []byte, hash string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxOutput+1))
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	if len(out) > maxOutput {
		return nil, fmt.Errorf("output larger than %d bytes", maxOutput)
	}
	if hashOf(out) != hash {
		return nil, errors.New("output does not match its hash")
	}
	return out, nil
}

// fixed is a follower's render source: the leader's output.
type fixed struct {
	out   []byte
	count int
}

func (f fixed) Render(w io.Writer) error { _, err := w.Write(f.out); return err }
func (f fixed) Count() int               { return f.count }

// failed is a render source that cannot render.
type failed struct{ err error }

func (f failed) Render(io.Writer) error { return f.err }
func (f failed) Count() int             { return 0 }

// Sources are the arguments of runner.WithSources for a runner with dedup:
// a template with Dedup set reads its dedup source (Key), any other reads
// the keys others gives it (nil: its prefixes), each opened by open. A
// dedup template that Key refuses is logged and rendered on its own.
// A dedup template reads the store alone: the leader's execution has no
// other source (the Consul catalog's functions fail there).
func (d *Deduper) Sources(others func(config.Template) []string, open func(key string) runner.Source) (keys func(config.Template) []string, opener func(key string) runner.Source) {
	if others == nil {
		others = func(t config.Template) []string { return t.Prefixes }
	}
	keys = func(t config.Template) []string {
		if !t.Dedup {
			return others(t)
		}
		k, err := d.Key(t)
		if err != nil {
			d.log.Error("template is rendered without dedup", "err", err)
			return others(t)
		}
		return []string{k}
	}
	opener = func(key string) runner.Source {
		if IsKey(key) {
			return d.Open(key)
		}
		return open(key)
	}
	return keys, opener
}
