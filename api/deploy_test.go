package api_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/deploy"
)

// floodDeployer reports a flood of large progress frames, then returns.
type floodDeployer struct{ returned chan struct{} }

func (d floodDeployer) Deploy(ctx context.Context, req deploy.Request, progress func(deploy.Progress)) (deploy.Revision, error) {
	msg := strings.Repeat("x", 32<<10)
	for i := range 2000 { // 64 MiB: far more than the sockets buffer
		progress(deploy.Progress{Time: time.Now(), Step: deploy.StepStart, Message: fmt.Sprint(i, msg)})
	}
	close(d.returned)
	return deploy.Revision{Service: req.Service, Number: 1, Outcome: deploy.OutcomeSucceeded}, nil
}

func (floodDeployer) Rollback(context.Context, deploy.RollbackRequest, func(deploy.Progress)) (deploy.Revision, error) {
	return deploy.Revision{}, nil
}

func (floodDeployer) Undeploy(context.Context, string, func(deploy.Progress)) (deploy.Revision, error) {
	return deploy.Revision{}, nil
}

func (floodDeployer) History(context.Context, string) ([]deploy.Revision, error) { return nil, nil }

// A client that asks for a deploy and then stops reading its stream does
// not hold the rollout up: progress goes on without it, the rollout
// returns, and the daemon answers others.
func TestDeployStreamStalledClient(t *testing.T) {
	d := floodDeployer{returned: make(chan struct{})}
	sock := filepath.Join(t.TempDir(), "berth.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewDeployServer(d).Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"spec":{"image":"web:1","replicas":1}}`
	if _, err := fmt.Fprintf(conn, "POST /v1/deployments/web HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		t.Fatal(err)
	}
	// ... and never read.
	select {
	case <-d.returned:
	case <-time.After(30 * time.Second):
		t.Fatal("the rollout is blocked on a client that does not read its progress")
	}
	if _, err := api.NewClient(sock).History(t.Context(), "web"); err != nil {
		t.Errorf("another request while a client stalls: %v", err)
	}
}
