package daemon

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/internal/backoff"
)

// openCerts prepares the certificate directory (mode 0700 when berth
// creates it) and its store.
func (d *Daemon) openCerts(dir string) *certs.Store {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		d.log.Warn("certificate directory", "dir", dir, "err", err) // the store retries
	}
	return certs.New(filepath.Clean(dir), certs.WithLogger(d.log))
}

// followHAProxyCerts hands renewed certificates to every live HAProxy
// template's HAProxy through its Runtime API (haproxy.CertSync) after
// each change of the certificate set, retrying a failed hand-over with
// backoff: a renewal leaves haproxy.cfg byte-identical, so nothing else
// would bring the new pair to the running worker.
func (d *Daemon) followHAProxyCerts(ctx context.Context) {
	notify, cancel := d.certs.Subscribe()
	defer cancel()
	syncs := map[string]*haproxy.CertSync{} // admin socket → its sync
	bo := backoff.New(time.Second, time.Minute)
	retry := time.After(0) // the set may be in before the subscription
	for {
		select {
		case <-ctx.Done():
			return
		case <-notify:
		case <-retry:
		}
		retry = nil
		set, _ := d.certs.Current()
		d.mu.Lock()
		tmpls := d.templates
		d.mu.Unlock()
		failed := false
		for _, t := range tmpls {
			if t.Live != "haproxy" || t.LiveDir == "" {
				continue
			}
			sock := filepath.Join(t.LiveDir, haproxy.SocketFile)
			s := syncs[sock]
			if s == nil {
				s = haproxy.NewCertSync(sock, d.log.With("template", t.Name))
				syncs[sock] = s
			}
			if n, err := s.Sync(ctx, set); err != nil {
				failed = true
				d.log.Warn("certificates not handed to haproxy; retrying", "template", t.Name, "err", err)
			} else if n > 0 {
				d.log.Info("certificates handed to haproxy", "template", t.Name, "set", n)
			}
		}
		if failed {
			retry = time.After(bo.Next())
		} else {
			bo.Reset()
		}
	}
}
