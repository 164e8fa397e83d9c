package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// The test binary is whoami too: with WHOAMI_TEST_MAIN set it runs main.
func TestMain(m *testing.M) {
	if os.Getenv("WHOAMI_TEST_MAIN") == "1" {
		os.Args = os.Args[:1]
		main()
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(addr string) (string, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestSignalExit: SIGTERM and SIGINT end whoami with status 0 (a clean
// stop shows Exited (0)); with WHOAMI_LINGER it keeps serving meanwhile.
func TestSignalExit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sig    syscall.Signal
		linger time.Duration
	}{
		{"SIGTERM", syscall.SIGTERM, 0},
		{"SIGINT", syscall.SIGINT, 0},
		{"SIGTERM with linger", syscall.SIGTERM, 700 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			_, port, _ := net.SplitHostPort(addr)
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "WHOAMI_TEST_MAIN=1", "WHOAMI_NAME=w1", "PORT="+port,
				fmt.Sprintf("WHOAMI_LINGER=%s", tc.linger))
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			deadline := time.Now().Add(10 * time.Second)
			for {
				if body, err := get(addr); err == nil {
					if body != "w1\n" {
						t.Fatalf("body %q, want w1", body)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("whoami did not answer")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if tc.linger > 0 {
				time.Sleep(tc.linger / 3)
				if body, err := get(addr); err != nil || body != "w1\n" {
					t.Errorf("during the linger: %q, %v; want it still serving", body, err)
				}
			}
			select {
			case err := <-exited:
				exited <- err
				if err != nil {
					t.Fatalf("exit: %v (%s), want status 0", err, cmd.ProcessState)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("whoami did not exit")
			}
		})
	}
}
