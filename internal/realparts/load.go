package realparts

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Load is a continuous HTTP load through a proxy: GET / with one Host
// header at a steady rate from a few keep-alive clients, counting each
// answer by its body and every failure (an error or a status other than
// 200).
type Load struct {
	addr, host string
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu       sync.Mutex
	res      LoadResult
	draining map[string]time.Time // body → when it was marked draining
	last     map[string]time.Time // body → start of the last request it answered
}

// LoadResult is what a Load saw.
type LoadResult struct {
	Requests int            `json:"requests"`
	Failed   int            `json:"failed_requests"`
	Failures []string       `json:"-"` // the first few failures
	Seen     map[string]int `json:"-"` // answers by body
	// Late counts answers from a backend marked draining (MarkDraining)
	// to requests that started after the mark.
	Late int `json:"-"`
}

// StartLoad starts rate requests per second (spread over clients) to
// http://addr/ with Host host.
func StartLoad(addr, host string, rate, clients int) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{addr: addr, host: host, cancel: cancel, res: LoadResult{Seen: map[string]int{}}, draining: map[string]time.Time{}, last: map[string]time.Time{}}
	every := time.Second * time.Duration(clients) / time.Duration(max(rate, 1))
	for range clients {
		c := &http.Client{Timeout: 10 * time.Second}
		l.wg.Go(func() {
			defer c.CloseIdleConnections()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				l.one(ctx, c)
			}
		})
	}
	return l
}

func (l *Load) one(ctx context.Context, c *http.Client) {
	start := time.Now()
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, "http://"+l.addr+"/", nil)
	if err != nil {
		return
	}
	req.Host = l.host
	body, err := func() (string, error) {
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return strings.TrimSpace(string(b)), nil
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.Requests++
	if err != nil {
		l.res.Failed++
		if len(l.res.Failures) < 10 {
			l.res.Failures = append(l.res.Failures, err.Error())
		}
		return
	}
	l.res.Seen[body]++
	if start.After(l.last[body]) {
		l.last[body] = start
	}
	if at, ok := l.draining[body]; ok && start.After(at) {
		l.res.Late++
	}
}

// Seen is how many answers had body so far.
func (l *Load) Seen(body string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res.Seen[body]
}

// LastStart is when the last request answered with body started (zero:
// none was).
func (l *Load) LastStart(body string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[body]
}

// MarkDraining notes that the backend answering body takes no new
// requests from now on (LoadResult.Late).
func (l *Load) MarkDraining(body string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.draining[body] = time.Now()
}

// Stop ends the load and returns what it saw.
func (l *Load) Stop() LoadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}
