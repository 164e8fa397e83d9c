package dockercompat

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime"
)

// historySize is how many events are kept for since/until replays.
const historySize = 1024

// hub follows the runtime's events, keeps the last historySize as Docker
// messages and fans them out to the server's streams (events, wait). A
// subscriber that falls behind is dropped: its channel is closed.
type hub struct {
	log     *slog.Logger
	mu      sync.Mutex
	history []events.Message // oldest first
	subs    map[*subscriber]bool
	closed  bool
}

type subscriber struct {
	ch chan events.Message
}

func newHub(log *slog.Logger) *hub { return &hub{log: log, subs: map[*subscriber]bool{}} }

// run follows rt until ctx ends (or the runtime closes); ready is closed
// once the first subscription to the runtime exists. onEvent sees every
// runtime event after it was published.
func (h *hub) run(ctx context.Context, rt runtime.Runtime, ready chan<- struct{}, onEvent func(runtime.Event)) {
	defer h.close()
	first := true
	for {
		evc, errc := rt.Events(ctx)
		if first {
			close(ready)
			first = false
		}
		for ev := range evc {
			h.publish(fromRuntime(ev))
			onEvent(ev)
		}
		err := <-errc
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, runtime.ErrSlowConsumer) {
			h.log.Warn("docker API: the runtime's event stream ended", "err", err)
			return
		}
		h.log.Warn("docker API: fell behind the runtime's events; resubscribing (some events are missing from streams)")
	}
}

// publish records m and sends it to every subscriber.
func (h *hub) publish(m events.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if len(h.history) == historySize {
		copy(h.history, h.history[1:])
		h.history = h.history[:historySize-1]
	}
	h.history = append(h.history, m)
	for s := range h.subs {
		select {
		case s.ch <- m:
		default:
			delete(h.subs, s)
			close(s.ch)
		}
	}
}

// subscribeHistory returns a live subscription and the events recorded
// so far (oldest first), with nothing lost or repeated between the two.
func (h *hub) subscribeHistory() (*subscriber, []events.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &subscriber{ch: make(chan events.Message, 512)}
	if h.closed {
		close(s.ch)
		return s, nil
	}
	h.subs[s] = true
	return s, slices.Clone(h.history)
}

// subscribe returns a live subscription.
func (h *hub) subscribe() *subscriber {
	s, _ := h.subscribeHistory()
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[s] {
		delete(h.subs, s)
		close(s.ch)
	}
}

func (h *hub) listeners() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.ch)
	}
}

// containerMessage is a container event as dockerd sends it: attributes
// are the labels plus name and image (and extra).
func containerMessage(action events.Action, c runtime.Container, extra map[string]string, at time.Time) events.Message {
	attrs := maps.Clone(c.Labels)
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs["name"] = c.Name
	attrs["image"] = c.Image
	maps.Copy(attrs, extra)
	if at.IsZero() {
		at = time.Now()
	}
	return events.Message{
		Type: events.ContainerEventType, Action: action, Scope: "local",
		Actor: events.Actor{ID: c.ID, Attributes: attrs},
		Time:  at.Unix(), TimeNano: at.UnixNano(),
	}
}

// fromRuntime converts a runtime event.
func fromRuntime(ev runtime.Event) events.Message {
	c := ev.Container
	action := events.Action(ev.Type)
	var extra map[string]string
	switch ev.Type {
	case runtime.EventHealthStatus:
		action = events.Action("health_status: " + string(c.Health))
	case runtime.EventKill:
		sig := ev.Signal
		if n := unix.SignalNum(sig); n != 0 {
			sig = strconv.Itoa(int(n))
		}
		extra = map[string]string{"signal": sig}
	case runtime.EventDie:
		extra = map[string]string{"exitCode": strconv.Itoa(c.ExitCode)}
		if !c.Started.IsZero() && !c.Finished.IsZero() {
			extra["execDuration"] = strconv.Itoa(int(c.Finished.Sub(c.Started).Seconds()))
		}
	}
	return containerMessage(action, c, extra, ev.Time)
}

// eventFilters are the filter keys dockerd accepts for GET /events.
var eventFilters = []string{"config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope", "secret", "service", "type", "volume"}

// matchEvent applies the events filters to m.
func matchEvent(f filters, m events.Message) bool {
	name := m.Actor.Attributes["name"]
	if !f.any("type", func(v string) bool { return v == string(m.Type) }) ||
		!f.any("event", func(v string) bool {
			// "health_status" matches "health_status: healthy".
			return v == string(m.Action) || strings.HasPrefix(string(m.Action), v+":")
		}) ||
		!f.any("scope", func(v string) bool { return v == m.Scope }) ||
		!f.matchLabels("label", m.Actor.Attributes) {
		return false
	}
	byType := map[events.Type]string{
		events.ContainerEventType: "container", events.ImageEventType: "image",
		events.NetworkEventType: "network", events.VolumeEventType: "volume",
		events.DaemonEventType: "daemon", events.PluginEventType: "plugin",
		events.ServiceEventType: "service", events.NodeEventType: "node",
		events.SecretEventType: "secret", events.ConfigEventType: "config",
	}
	for _, k := range []string{"container", "network", "volume", "daemon", "plugin", "service", "node", "secret", "config"} {
		if !f.has(k) {
			continue
		}
		if byType[m.Type] != k {
			return false
		}
		if !f.any(k, func(v string) bool {
			return v == m.Actor.ID || v == name || len(v) >= 12 && strings.HasPrefix(m.Actor.ID, v)
		}) {
			return false
		}
	}
	if f.has("image") {
		img := m.Actor.Attributes["image"]
		if m.Type == events.ImageEventType {
			img = m.Actor.ID
		}
		if !f.any("image", func(v string) bool { return imageRefMatch(v, img) }) {
			return false
		}
	}
	return true
}

// imageRefMatch compares image references loosely: "busybox" matches
// "busybox:latest".
func imageRefMatch(v, img string) bool {
	if v == img {
		return true
	}
	norm := func(s string) string {
		if !strings.Contains(s[strings.LastIndex(s, "/")+1:], ":") && !strings.Contains(s, "@") {
			return s + ":latest"
		}
		return s
	}
	return img != "" && norm(v) == norm(img)
}

// parseTimestamp reads dockerd's since/until values: unix seconds with an
// optional fraction, or RFC 3339.
func parseTimestamp(k, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		sec, frac, _ := strings.Cut(v, ".")
		s, err := strconv.ParseInt(sec, 10, 64)
		if err != nil {
			return time.Time{}, badRequest("invalid %s timestamp %q", k, v)
		}
		var ns int64
		if frac != "" {
			frac = (frac + "000000000")[:9]
			ns, _ = strconv.ParseInt(frac, 10, 64)
		}
		return time.Unix(s, ns), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, badRequest("invalid %s timestamp %q: want unix seconds (with an optional fraction) or RFC 3339", k, v)
}

// parseWindow reads a request's since and until timestamps (zero: not
// given), as /events and /containers/{id}/logs take them.
func parseWindow(q url.Values) (since, until time.Time, err error) {
	if since, err = parseTimestamp("since", q.Get("since")); err != nil {
		return time.Time{}, time.Time{}, err
	}
	until, err = parseTimestamp("until", q.Get("until"))
	return since, until, err
}

// legacyMessage carries the fields API versions below 1.52 still have.
type legacyMessage struct {
	Status string `json:"status,omitempty"`
	ID     string `json:"id,omitempty"`
	From   string `json:"from,omitempty"`
	events.Message
}

func encodeEvent(m events.Message, legacy bool) any {
	if !legacy {
		return m
	}
	l := legacyMessage{Message: m}
	if m.Type == events.ContainerEventType || m.Type == events.ImageEventType {
		l.Status, l.ID = string(m.Action), m.Actor.ID
		if m.Type == events.ContainerEventType {
			l.From = m.Actor.Attributes["image"]
		}
	}
	return l
}

func jsonLine(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return err
	}
	flush(w)
	return nil
}

// streamEvents serves GET /events: the history since `since`, then live
// events until `until` or the client goes away, one JSON object per line,
// each flushed.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f, err := parseFilters(q.Get("filters"), eventFilters...)
	if err != nil {
		return err
	}
	since, until, err := parseWindow(q)
	if err != nil {
		return err
	}
	legacy := reqVersion(r).before("1.52")
	sub, history := s.hub.subscribeHistory()
	defer s.hub.unsubscribe(sub)
	ct := "application/json"
	accept := r.Header.Get("Accept")
	switch {
	case strings.Contains(accept, "application/jsonl"):
		ct = "application/jsonl"
	case strings.Contains(accept, "application/x-ndjson"):
		ct = "application/x-ndjson"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	flush(w)
	send := func(m events.Message) error {
		if !matchEvent(f, m) {
			return nil
		}
		return jsonLine(w, encodeEvent(m, legacy))
	}
	inWindow := func(m events.Message) (ok, past bool) {
		t := time.Unix(0, m.TimeNano)
		if !until.IsZero() && t.After(until) {
			return false, true
		}
		return since.IsZero() || !t.Before(since), false
	}
	if !since.IsZero() {
		for _, m := range history {
			if ok, past := inWindow(m); past {
				return nil
			} else if ok {
				if err := send(m); err != nil {
					return nil
				}
			}
		}
	}
	var deadline <-chan time.Time
	if !until.IsZero() {
		d := time.Until(until)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-deadline:
			return nil
		case m, ok := <-sub.ch:
			if !ok {
				return nil
			}
			ok, past := inWindow(m)
			if past {
				return nil
			}
			if ok {
				if err := send(m); err != nil {
					return nil
				}
			}
		}
	}
}

// onEvent runs after the hub published a runtime event: it removes
// containers created with AutoRemove once they exit.
func (s *Server) onEvent(ev runtime.Event) {
	if ev.Type == runtime.EventDestroy {
		s.mu.Lock()
		delete(s.autoRm, ev.Container.ID)
		delete(s.tty, ev.Container.ID)
		s.mu.Unlock()
		return
	}
	if ev.Type != runtime.EventDie {
		return
	}
	s.mu.Lock()
	rm := s.autoRm[ev.Container.ID]
	s.mu.Unlock()
	if !rm {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Let attach streams (docker run --rm) read the last output first.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			s.mu.Lock()
			n := s.attached[ev.Container.ID]
			s.mu.Unlock()
			if n == 0 {
				break
			}
		}
		if err := s.rt.Remove(ctx, ev.Container.ID, runtime.Force()); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			s.log.Warn("docker API: auto-remove container", "id", ev.Container.ID, "err", err)
		}
		s.mu.Lock()
		delete(s.autoRm, ev.Container.ID)
		s.mu.Unlock()
	}()
}
