package storetest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
)

// Environment of the orphan child process.
const (
	envOrphanURL   = "BERTH_STORETEST_ORPHAN_URL"
	envOrphanKey   = "BERTH_STORETEST_ORPHAN_KEY"
	envOrphanValue = "BERTH_STORETEST_ORPHAN_VALUE"
	envOrphanTTL   = "BERTH_STORETEST_ORPHAN_TTL"
	orphanReady    = "storetest-orphan-ready"
)

// Main is for a backend test package's TestMain: in the orphan child
// process started by RunOrphan it writes the TTL key and waits to be
// killed; otherwise it runs the tests.
func Main(m *testing.M) {
	if url := os.Getenv(envOrphanURL); url != "" {
		os.Exit(orphanChild(url))
	}
	os.Exit(m.Run())
}

func orphanChild(url string) int {
	ttl, err := time.ParseDuration(os.Getenv(envOrphanTTL))
	if err != nil {
		fmt.Fprintln(os.Stderr, "orphan: bad ttl:", err)
		return 2
	}
	ctx := context.Background()
	st, err := backend.Open(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orphan: open:", err)
		return 1
	}
	if _, err := st.Put(ctx, os.Getenv(envOrphanKey), []byte(os.Getenv(envOrphanValue)), store.WithTTL(ttl)); err != nil {
		fmt.Fprintln(os.Stderr, "orphan: put:", err)
		return 1
	}
	fmt.Println(orphanReady)
	select {} // until SIGKILL: the store is never closed, the lease never revoked
}

// RunOrphan starts a child process (this test binary, in the mode Main
// provides) that opens url, puts key with ttl, and is then killed with
// SIGKILL, so its TTL key is left to expire on its own.
func RunOrphan(t *testing.T, url, key, value string, ttl time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envOrphanURL+"="+url, envOrphanKey+"="+key, envOrphanValue+"="+value, envOrphanTTL+"="+ttl.String())
	cmd.Stderr = os.Stderr
	// If the test binary dies first (a -timeout), the orphan must not live
	// on and keep its lease alive.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start orphan: %v", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == orphanReady {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("orphan exited before writing its key")
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("orphan not ready within 30s")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}
