package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/internal/realparts"
)

// HAProxy is a real HAProxy (realparts.HAProxy) inside a test directory,
// stopped when the test ends.
type HAProxy struct {
	*realparts.HAProxy
}

// NewHAProxy prepares an HAProxy directory and port; it does not start
// HAProxy. The directory is a short one under the system temp dir (a unix
// socket path must be short), removed when the test ends.
func NewHAProxy(t testing.TB) *HAProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-haproxy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h, err := realparts.NewHAProxy(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return &HAProxy{h}
}

// Start runs HAProxy on Conf (which must exist) and waits until it
// answers.
func (h *HAProxy) Start(t testing.TB) {
	t.Helper()
	if err := h.HAProxy.Start(); err != nil {
		t.Fatal(err)
	}
}

// WorkerPID is the pid of the worker answering on the admin socket (a
// new one after every reload or restart), waiting up to 5s for one.
func (h *HAProxy) WorkerPID(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in, err := haproxy.NewClient(h.Socket).WaitWorker(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	return in.PID
}
