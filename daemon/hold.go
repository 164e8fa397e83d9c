package daemon

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/store"
)

// DefaultRegisterHold bounds how long the templates are held back while
// this host's records, lost with a lease, are written again.
const DefaultRegisterHold = 30 * time.Second

// holdCheck is how often a hold looks whether the registrar still owns
// the keys it waits for.
const holdCheck = 100 * time.Millisecond

// owner is what the hold needs of the registrar.
type owner interface {
	// Owns reports whether key is one of this host's records, and the
	// revision it was written at.
	Owns(key string) (store.Revision, bool)
	// OwnedUnder lists this host's records under prefix.
	OwnedUnder(prefix string) map[string]store.Revision
	// Reregister writes every record again, now, in the background.
	Reregister()
}

// holdStore is the store as the runner sees it. When a watch delivers the
// removal of records this host's registrar owns (it never deleted them: a
// lease lost while the store was unreachable, and revoked when it came
// back), the watch's responses are held back and the registrar
// re-registers. The held responses go out as one, once every lost record
// is back (or the registrar no longer owns it, or max passes), so that the
// runner's mirrors apply the removal and the re-registration together and
// no render ever sees the gap. Listings wait out a hold, and a listing that
// lacks owned records waits for them to be written again.
type holdStore struct {
	store.Store
	reg owner
	max time.Duration
	log *slog.Logger

	holds   prometheus.Counter
	holding atomic.Int64 // watches holding back responses
	since   atomic.Int64 // unix nanoseconds of the oldest hold under way; 0: none
}

func newHoldStore(st store.Store, reg owner, max time.Duration, holds prometheus.Counter, log *slog.Logger) *holdStore {
	return &holdStore{Store: st, reg: reg, max: max, holds: holds, log: log}
}

// held reports since when renders have been held back (zero: they are not).
func (h *holdStore) held() time.Time {
	if ns := h.since.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (h *holdStore) startHold() {
	if h.holding.Add(1) == 1 {
		h.since.Store(time.Now().UnixNano())
	}
	h.holds.Inc()
}

func (h *holdStore) endHold() {
	if h.holding.Add(-1) == 0 {
		h.since.Store(0)
	}
}

// lost reports whether ev removes a record the registrar owns.
func (h *holdStore) lost(ev store.Event) bool {
	if ev.Type != store.EventDelete {
		return false
	}
	rev, ok := h.reg.Owns(ev.KV.Key)
	return ok && (ev.KV.ModRevision == 0 || rev < ev.KV.ModRevision)
}

// Watch implements store.Store, holding back responses as the type says.
func (h *holdStore) Watch(ctx context.Context, prefix string, after store.Revision) <-chan store.WatchResponse {
	in := h.Store.Watch(ctx, prefix, after)
	out := make(chan store.WatchResponse)
	go h.relay(ctx, prefix, in, out)
	return out
}

// relay passes in to out, merging responses while out's reader is busy or
// a hold is on. It closes out after in is closed and everything is sent,
// or when ctx ends.
func (h *holdStore) relay(ctx context.Context, prefix string, in <-chan store.WatchResponse, out chan<- store.WatchResponse) {
	defer close(out)
	var (
		queue   []store.WatchResponse // to send, in order; only the last may be merged into
		missing = map[string]bool{}   // owned records the held responses removed
		holdEnd <-chan time.Time      // non-nil while holding
		check   *time.Ticker
		started time.Time
	)
	release := func(why string) {
		if holdEnd == nil {
			return
		}
		holdEnd = nil
		check.Stop()
		h.endHold()
		clear(missing)
		h.log.Info("renders released", "prefix", prefix, "why", why, "held", time.Since(started).Round(time.Millisecond))
	}
	defer release("watch ended")
	for {
		var (
			send chan<- store.WatchResponse
			next store.WatchResponse
			tick <-chan time.Time
		)
		if len(queue) > 0 && holdEnd == nil {
			send, next = out, queue[0]
		}
		if holdEnd != nil {
			tick = check.C
		}
		if in == nil && len(queue) == 0 {
			return
		}
		select {
		case resp, ok := <-in:
			if !ok {
				in = nil
				release("watch ended")
				continue
			}
			if resp.Err != nil {
				release("watch failed")
				queue = append(queue, resp)
				continue
			}
			for _, ev := range resp.Events {
				switch {
				case h.lost(ev):
					missing[ev.KV.Key] = true
				case ev.Type == store.EventPut:
					delete(missing, ev.KV.Key)
				}
			}
			if n := len(queue); n > 0 && queue[n-1].Err == nil {
				queue[n-1].Events = append(queue[n-1].Events, resp.Events...)
				queue[n-1].Revision = max(queue[n-1].Revision, resp.Revision)
			} else {
				queue = append(queue, resp)
			}
			switch {
			case len(missing) > 0 && holdEnd == nil:
				started = time.Now()
				holdEnd = time.After(h.max)
				check = time.NewTicker(holdCheck)
				h.startHold()
				h.log.Warn("this host's records were removed by the store (lease lost?); holding renders while they are written again",
					"prefix", prefix, "records", len(missing))
				h.reg.Reregister()
			case len(missing) == 0:
				release("records back")
			}
		case send <- next:
			queue = queue[1:]
		case <-tick:
			for k := range missing {
				if _, ok := h.reg.Owns(k); !ok {
					delete(missing, k) // gone for good: the container went meanwhile
				}
			}
			if len(missing) == 0 {
				release("records back")
			}
		case <-holdEnd:
			h.log.Warn("this host's records were not written again in time; rendering without them", "prefix", prefix, "waited", h.max, "records", len(missing))
			release("timeout")
		case <-ctx.Done():
			return
		}
	}
}

// List implements store.Store: it waits out a hold, and while the listing
// lacks records the registrar owns (written before the listing's
// revision), it has them written again and lists again, for at most max.
func (h *holdStore) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	deadline := time.Now().Add(h.max)
	for {
		for h.holding.Load() > 0 && time.Now().Before(deadline) {
			if !backoff.Sleep(ctx, holdCheck) {
				return nil, 0, ctx.Err()
			}
		}
		kvs, rev, err := h.Store.List(ctx, prefix)
		if err != nil || rev == 0 || !time.Now().Before(deadline) || !h.gap(prefix, kvs, rev) {
			return kvs, rev, err
		}
		h.reg.Reregister()
		if !backoff.Sleep(ctx, holdCheck) {
			return nil, 0, ctx.Err()
		}
	}
}

// gap reports whether a listing of prefix at rev lacks records the
// registrar wrote before rev.
func (h *holdStore) gap(prefix string, kvs []store.KV, rev store.Revision) bool {
	owned := h.reg.OwnedUnder(prefix)
	if len(owned) == 0 {
		return false
	}
	present := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		present[kv.Key] = true
	}
	for k, r := range owned {
		if r <= rev && !present[k] {
			return true
		}
	}
	return false
}
