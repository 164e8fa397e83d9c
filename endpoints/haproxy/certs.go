package haproxy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/berthd/berth/certs"
)

// LoadedCerts returns the certificate files HAProxy's worker has loaded
// ("show ssl cert"), without a transaction's pending ones.
func (c *Conn) LoadedCerts(ctx context.Context) ([]string, error) {
	reply, err := c.run(ctx, "show ssl cert")
	if err != nil {
		return nil, err
	}
	var files []string
	for _, l := range strings.Split(reply, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "*") {
			continue
		}
		files = append(files, l)
	}
	return files, nil
}

// SetCert replaces the certificate HAProxy loaded from file with pem (the
// chain and the key) in one transaction, without a reload: set ssl cert
// with the payload, then commit ssl cert. A transaction HAProxy refuses
// is aborted and the error names the command and HAProxy's reply.
func (c *Conn) SetCert(ctx context.Context, file string, pem []byte) error {
	if _, err := commandLine([]string{file}); err != nil {
		return err
	}
	// The payload ends at the first empty line: drop any inside it.
	var payload bytes.Buffer
	for _, l := range bytes.Split(pem, []byte("\n")) {
		if l = bytes.TrimRight(l, "\r"); len(l) > 0 {
			payload.Write(l)
			payload.WriteByte('\n')
		}
	}
	set := "set ssl cert " + file
	reply, err := c.run(ctx, set+" <<\n"+payload.String())
	if err != nil {
		return err
	}
	reply = strings.TrimLeft(reply, "+ \n") // a prompt per payload line
	if !strings.Contains(reply, "Transaction created") && !strings.Contains(reply, "Transaction updated") {
		c.run(ctx, "abort ssl cert "+file)
		return &CommandError{Command: set, Reply: reply}
	}
	commit := "commit ssl cert " + file
	if reply, err = c.run(ctx, commit); err != nil {
		return err
	}
	if !strings.Contains(reply, "Success") {
		c.run(ctx, "abort ssl cert "+file)
		return &CommandError{Command: commit, Reply: reply}
	}
	return nil
}

// CertSync hands renewed certificates to HAProxy through the Runtime API
// on its admin socket: Sync sets every certificate file the worker has
// loaded whose pair in the set changed since it was last handed over
// (all of them once per new worker: a reload may predate the files), so
// a renewal needs no reload. A file the worker has not loaded (a new
// host's certificate) is left to the template: it names the file, which
// changes haproxy.cfg, and the reload loads it.
type CertSync struct {
	client *Client
	log    *slog.Logger

	mu      sync.Mutex
	pid     int
	applied map[string]string // file → digest the worker has
}

// NewCertSync returns a CertSync for the admin socket.
func NewCertSync(socket string, log *slog.Logger, opts ...ClientOption) *CertSync {
	if log == nil {
		log = slog.Default()
	}
	return &CertSync{client: NewClient(socket, opts...), log: log, applied: map[string]string{}}
}

// Sync applies set to the worker and returns how many certificates it
// set. The error of one certificate does not stop the others; the
// first is returned.
func (s *CertSync) Sync(ctx context.Context, set *certs.Set) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.client.Dial(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	in, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	if in.PID != s.pid {
		s.pid, s.applied = in.PID, map[string]string{}
	}
	loaded, err := c.LoadedCerts(ctx)
	if err != nil {
		return 0, err
	}
	byFile := map[string]certs.Cert{}
	for _, ct := range set.List() {
		byFile[ct.CertFile] = ct
	}
	n := 0
	var first error
	for _, f := range loaded {
		ct, ok := byFile[f]
		if !ok || s.applied[f] == ct.Digest {
			continue
		}
		pem, err := ct.PEM()
		if err == nil {
			err = c.SetCert(ctx, f, pem)
		}
		if err != nil {
			s.log.Warn("certificate not handed to haproxy", "file", f, "err", err)
			if first == nil {
				first = fmt.Errorf("certificate %s: %w", f, err)
			}
			continue
		}
		s.applied[f] = ct.Digest
		n++
	}
	return n, first
}
