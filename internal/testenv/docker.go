package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// BuildWhoami compiles the whoami server (examples/whoami) as
// a static binary into dir and returns its path.
func BuildWhoami(t testing.TB, dir string) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(self), "..", "..", "examples", "whoami")
	out := filepath.Join(dir, "whoami")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build whoami: %v\n%s", err, b)
	}
	return out
}

// DockerImage is a test image in the real Docker Engine.
type DockerImage struct {
	Ref   string // repository:tag
	Label string // label key=value on the image and on every container a test starts from it
}

// Tag is the random part of Label, for names unique to the test.
func (i DockerImage) Tag() string {
	_, v, _ := strings.Cut(i.Label, "=")
	return v
}

// BuildDockerImage builds a FROM scratch image holding the whoami server
// (no image can be pulled here), labelled for cleanup; the image and every
// container carrying its label are removed when the test ends.
func BuildDockerImage(t testing.TB) DockerImage {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("the docker CLI is required: it comes with the Docker Engine on this machine")
	}
	dir := t.TempDir()
	BuildWhoami(t, dir)
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	img := DockerImage{Ref: "berth-test-whoami:" + id, Label: "berth.test=" + id}
	dockerfile := "FROM scratch\nCOPY whoami /whoami\nEXPOSE 8080\nENTRYPOINT [\"/whoami\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker", "build", "-q", "--label", img.Label, "-t", img.Ref, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { removeDockerLabelled(img) })
	return img
}

// removeDockerLabelled removes the containers labelled with img.Label, then
// the image.
func removeDockerLabelled(img DockerImage) {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+img.Label).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
	}
	if err := exec.Command("docker", "rmi", "-f", img.Ref).Run(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: removing image %s: %v\n", img.Ref, err)
	}
}

// DockerNetwork creates a user-defined bridge network for the test's
// containers (labelled like img, removed when the test ends) and returns
// its name. Tests talk to containers only on networks they created.
func DockerNetwork(t testing.TB, img DockerImage) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "berth-test-" + hex.EncodeToString(b)
	if out, err := exec.Command("docker", "network", "create", "--label", img.Label, name).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Containers first (they hold endpoints on the network).
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "network="+name).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
		if out, err := exec.Command("docker", "network", "rm", name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: removing network %s: %v %s\n", name, err, out)
		}
	})
	return name
}
