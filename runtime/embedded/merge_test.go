package embedded_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
	"github.com/berthd/berth/runtime/embedded/image"
)

func bytesLayer(t *testing.T, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestImageConfigMerge runs a two-layer image (a whiteout in the top
// layer) whose config sets Entrypoint, Cmd, Env, WorkingDir, User,
// Labels and ExposedPorts, and overrides them the way docker run does.
func TestImageConfigMerge(t *testing.T) {
	r := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	var base bytes.Buffer
	if err := image.WriteDirTar(&base, fx.Busybox); err != nil {
		t.Fatal(err)
	}
	var top bytes.Buffer
	tw := tar.NewWriter(&top)
	for _, h := range []*tar.Header{
		{Name: "srv/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "srv/hello", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6},
		{Name: "bin/.wh.vi", Typeflag: tar.TypeReg, Mode: 0o644},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			_, _ = tw.Write([]byte("hello\n"))
		}
	}
	_ = tw.Close()
	img, err := mutate.AppendLayers(empty.Image, bytesLayer(t, base.Bytes()), bytesLayer(t, top.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{
		Entrypoint: []string{"sh", "-c"}, Cmd: []string{"echo $GREETING from $(pwd) as $(id -u); cat hello; ls /bin/vi"},
		Env: []string{"PATH=/bin", "GREETING=hi"}, WorkingDir: "/srv", User: "nobody",
		Labels: map[string]string{"a": "image", "b": "image"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "img.tar")
	tag, _ := name.NewTag("merge:1")
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Images().Load(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec runtime.Spec
		out  string
		code int
	}{
		{"image config", runtime.Spec{}, "hi from /srv as 65534\nhello\nls: /bin/vi: No such file or directory\n", 1},
		{"cmd and env override", runtime.Spec{Cmd: []string{"echo $GREETING"}, Env: []string{"GREETING=yo"}}, "yo\n", 0},
		{"entrypoint drops the image cmd", runtime.Spec{Entrypoint: []string{"echo"}}, "\n", 0},
		{"user and workdir override", runtime.Spec{User: "0:0", WorkingDir: "/tmp", Cmd: []string{"echo $(pwd) $(id -u)"}}, "/tmp 0\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Image = "merge:1"
			tc.spec.Labels = map[string]string{"b": "run"}
			c, out := runOutput(t, r, tc.spec)
			if out != tc.out || c.ExitCode != tc.code {
				t.Errorf("output %q exit %d, want %q %d", out, c.ExitCode, tc.out, tc.code)
			}
			if c.Labels["a"] != "image" || c.Labels["b"] != "run" || len(c.Ports) != 1 || c.Ports[0].Port != 8080 {
				t.Errorf("labels %v ports %v", c.Labels, c.Ports)
			}
		})
	}
}
