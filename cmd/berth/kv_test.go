package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store/etcd"
)

// run runs berth in-process and returns its exit code and output.
func run(t *testing.T, ctx context.Context, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(ctx, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// startEmbedded serves the embedded store under a temp state dir, so that
// every berth command of the test joins this one server.
func startEmbedded(t *testing.T) string {
	t.Helper()
	stateDir := t.TempDir()
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: stateDir + "/store"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return stateDir
}

func TestKV(t *testing.T) {
	sd := "--state-dir=" + startEmbedded(t)
	ctx := t.Context()
	tests := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		stdout   string // exact, unless empty
		stderrIn string // substring of stderr
	}{
		{"put", "", []string{"kv", "put", sd, "/berth/services/web/h1/a", `{"ip":"10.0.0.1"}`}, 0, "OK\n", ""},
		{"put stdin", "from stdin\n", []string{"kv", "put", sd, "/berth/services/web/h1/b", "-"}, 0, "OK\n", ""},
		{"put unicode key", "", []string{"kv", "put", sd, "/berth/odd/with space/ünï", "v"}, 0, "OK\n", ""},
		{"get", "", []string{"kv", "get", sd, "/berth/services/web/h1/a"}, 0, "{\"ip\":\"10.0.0.1\"}\n", ""},
		{"get prefix", "", []string{"kv", "get", sd, "--prefix", "/berth/services/"}, 0,
			"/berth/services/web/h1/a\n{\"ip\":\"10.0.0.1\"}\n/berth/services/web/h1/b\nfrom stdin\n\n", ""},
		{"ls", "", []string{"kv", "ls", sd, "/berth/"}, 0, "/berth/odd/with space/ünï\n/berth/services/web/h1/a\n/berth/services/web/h1/b\n", ""},
		{"get missing", "", []string{"kv", "get", sd, "/berth/nope"}, 1, "", `"/berth/nope": key not found`},
		{"rm missing", "", []string{"kv", "rm", sd, "/berth/nope"}, 1, "", "key not found"},
		{"rm", "", []string{"kv", "rm", sd, "/berth/odd/with space/ünï"}, 0, "1\n", ""},
		{"bad url", "", []string{"kv", "ls", "--store", "nosuch://x"}, 2, "", `unknown scheme "nosuch"`},
		{"url without port", "", []string{"kv", "ls", "--store", "etcd://127.0.0.1"}, 2, "", "has no port"},
		{"unreachable", "", []string{"kv", "ls", "--store", "etcd://127.0.0.1:1"}, 1, "", "etcd 127.0.0.1:1: no answer"},
		{"unreadable tls", "", []string{"kv", "ls", "--store", "etcds://127.0.0.1:1", "--store-ca", "/nonexistent/ca.pem"}, 1, "", "/nonexistent/ca.pem"},
		{"bad output", "", []string{"kv", "ls", sd, "-o", "yaml"}, 2, "", "--output"},
		{"bad args", "", []string{"kv", "get", sd}, 2, "", "accepts 1 arg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, ctx, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out, errs)
			}
			if tc.stdout != "" && out != tc.stdout {
				t.Fatalf("stdout %q, want %q", out, tc.stdout)
			}
			if !strings.Contains(errs, tc.stderrIn) {
				t.Fatalf("stderr %q does not contain %q", errs, tc.stderrIn)
			}
		})
	}

	t.Run("ls json", func(t *testing.T) {
		code, out, errs := run(t, ctx, "", "kv", "ls", sd, "/berth/services/", "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var got struct {
			Revision int64 `json:"revision"`
			Keys     []struct{ Key, Value string }
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got.Revision == 0 || len(got.Keys) != 2 || got.Keys[1].Value != "from stdin\n" {
			t.Fatalf("unexpected listing: %+v", got)
		}
	})
}

func TestKVWatch(t *testing.T) {
	sd := "--state-dir=" + startEmbedded(t)
	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg             sync.WaitGroup
		code           int
		out            testenv.SyncBuffer
		errb           bytes.Buffer
		startedWatcher = make(chan struct{})
	)
	wg.Go(func() {
		close(startedWatcher)
		code = execute(ctx, []string{"kv", "watch", sd, "/w/"}, strings.NewReader(""), &out, &errb)
	})
	<-startedWatcher
	// The watch starts from "now": keep writing until the first event shows.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "PUT /w/first") {
		if time.Now().After(deadline) {
			t.Fatalf("watch printed nothing: %q %q", out.String(), errb.String())
		}
		run(t, t.Context(), "", "kv", "put", sd, "/w/first", "1")
		time.Sleep(100 * time.Millisecond)
	}
	run(t, t.Context(), "", "kv", "put", sd, "/w/second", "two words")
	run(t, t.Context(), "", "kv", "put", sd, "/other", "not watched")
	run(t, t.Context(), "", "kv", "rm", sd, "/w/first")
	for !strings.Contains(out.String(), "DELETE /w/first") {
		if time.Now().After(deadline) {
			t.Fatalf("watch output incomplete: %q", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if code != 0 {
		t.Fatalf("interrupted watch exited %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "PUT /w/second \"two words\"\n") || strings.Contains(out.String(), "/other") {
		t.Fatalf("watch output: %q", out.String())
	}
}

func TestKVPutTTL(t *testing.T) {
	sd := "--state-dir=" + startEmbedded(t)
	if code, _, errs := run(t, t.Context(), "", "kv", "put", sd, "--ttl", "2s", "/ttl/k", "v"); code != 0 {
		t.Fatalf("put --ttl: %s", errs)
	}
	// The command has exited; the key lives on until its TTL runs out.
	if code, out, _ := run(t, t.Context(), "", "kv", "get", sd, "/ttl/k"); code != 0 || out != "v\n" {
		t.Fatalf("key gone right after put --ttl (exit %d, %q)", code, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _ := run(t, t.Context(), "", "kv", "get", sd, "/ttl/k")
		if code == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("TTL key still there 10s after a 2s TTL")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitFileContains waits until path holds every one of want and returns
// its content; on timeout it fails, showing the file and log.
func waitFileContains(t *testing.T, path string, log fmt.Stringer, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(string(b), w)
		}
		if ok {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q:\n%s\nstderr: %s", path, want, b, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKVPutTTLConsul: on Consul too, a key put with --ttl outlives the
// command and then expires (Consul invalidates a session up to 2×TTL late).
func TestKVPutTTLConsul(t *testing.T) {
	agent := testenv.StartConsul(t)
	url := "--store=consul://" + agent.Addr
	if code, _, errs := run(t, t.Context(), "", "kv", "put", url, "--ttl", "10s", "/ttl/k", "v"); code != 0 {
		t.Fatalf("put --ttl: %s", errs)
	}
	if code, out, _ := run(t, t.Context(), "", "kv", "get", url, "/ttl/k"); code != 0 || out != "v\n" {
		t.Fatalf("key gone right after put --ttl (exit %d, %q)", code, out)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		if code, _, _ := run(t, t.Context(), "", "kv", "get", url, "/ttl/k"); code == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("TTL key still there 45s after a 10s TTL")
		}
		time.Sleep(500 * time.Millisecond)
	}
}
