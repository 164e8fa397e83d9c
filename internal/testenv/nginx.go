package testenv

import (
	"testing"

	"github.com/berthd/berth/internal/realparts"
)

// Nginx is a real nginx (realparts.Nginx) inside a test directory, stopped
// when the test ends.
type Nginx struct {
	*realparts.Nginx
}

// NewNginx prepares an nginx directory and port; it does not start nginx.
func NewNginx(t testing.TB) *Nginx {
	t.Helper()
	n, err := realparts.NewNginx(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return &Nginx{n}
}

// Start runs nginx on Conf (which must exist) and waits until it answers.
func (n *Nginx) Start(t testing.TB) {
	t.Helper()
	if err := n.Nginx.Start(); err != nil {
		t.Fatal(err)
	}
}
