// Package dockertest holds what berth's docker-gen tests share: a Docker
// test image whose program (./probe) counts the SIGHUPs it receives and
// reports its own container ID, and a client for it.
package dockertest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime/docker"
)

// BuildImage builds a FROM scratch image holding the probe (exposing
// 8080), labelled for cleanup; the image and every container carrying its
// label are removed when the test ends.
func BuildImage(t testing.TB) testenv.DockerImage {
	t.Helper()
	dir := t.TempDir()
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "probe"), "./probe")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	img := testenv.DockerImage{Ref: "berth-test-probe:" + id, Label: "berth.test=" + id}
	dockerfile := "FROM scratch\nCOPY probe /probe\nEXPOSE 8080\nENTRYPOINT [\"/probe\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("docker", "build", "-q", "--label", img.Label, "-t", img.Ref, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+img.Label).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
		if out, err := exec.Command("docker", "rmi", "-f", img.Ref).CombinedOutput(); err != nil {
			t.Logf("removing image %s: %v %s", img.Ref, err, out)
		}
	})
	return img
}

// Get fetches http://ip:8080/path from a probe, retrying for up to 15 s
// while it starts, and returns the body without surrounding space.
func Get(t testing.TB, ip, path string) string {
	t.Helper()
	url := "http://" + ip + ":8080" + path
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return strings.TrimSpace(string(body))
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Hups returns how many SIGHUPs the probe at ip has received.
func Hups(t testing.TB, ip string) int {
	t.Helper()
	n, err := strconv.Atoi(Get(t, ip, "/hups"))
	if err != nil {
		t.Fatalf("probe %s /hups: %v", ip, err)
	}
	return n
}

// Engine connects to the Docker Engine DOCKER_HOST names (the default
// socket without it); the connection is closed when the test ends.
func Engine(t testing.TB) *docker.Runtime {
	t.Helper()
	rt, err := docker.New(t.Context(), docker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}
