package realparts

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/internal/tick"
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
	for i := range clients {
		c := &http.Client{Timeout: 10 * time.Second}
		l.wg.Go(func() {
			defer c.CloseIdleConnections()
			// Staggered: the clients' requests interleave instead of
			// coming in bursts.
			select {
			case <-ctx.Done():
				return
			case <-time.After(every * time.Duration(i) / time.Duration(clients)):
			}
			tick.Every(ctx, every, func() { l.one(ctx, c) })
		})
	}
	return l
}

func (l *Load) one(ctx context.Context, c *http.Client) {
	start := time.Now()
	body, err := func() (string, error) {
		a, err := Get(context.WithoutCancel(ctx), c, l.addr, l.host)
		if err != nil {
			return "", err
		}
		if a.Code != http.StatusOK {
			return "", fmt.Errorf("%s: %s", a.Status, a.Body)
		}
		return a.Body, nil
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

// Answer is the answer to a Get.
type Answer struct {
	Code   int    // the status code
	Status string // the status line's code and reason, e.g. "200 OK"
	Body   string // the body, trimmed of surrounding space
}

// Get sends GET http://addr/ with Host host on c and reads the answer.
func Get(ctx context.Context, c *http.Client, addr, host string) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return Answer{}, err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, err
	}
	return Answer{Code: resp.StatusCode, Status: resp.Status, Body: strings.TrimSpace(string(b))}, nil
}
