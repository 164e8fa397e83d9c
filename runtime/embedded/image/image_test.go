package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/image"
)

type entry struct {
	name, body, link string
	typ              byte
}

func layerTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	b := layerTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage has two layers exercising whiteouts and a full config.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image,
		layer(t, entry{name: "a/", typ: tar.TypeDir}, entry{name: "a/x", body: "x"}, entry{name: "keep", body: "k"}, entry{name: "gone", body: "g"}, entry{name: "bin/sh", link: "busybox", typ: tar.TypeSymlink}),
		layer(t, entry{name: "a/.wh..wh..opq"}, entry{name: "a/new", body: "n"}, entry{name: ".wh.gone"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{
		Env: []string{"PATH=/bin", "A=1"}, Cmd: []string{"serve"}, Entrypoint: []string{"/srv/web"},
		WorkingDir: "/srv", User: "nobody", Labels: map[string]string{"l": "v"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func openStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkUnpacked asserts the layers of the test image on disk: whiteouts
// in overlayfs form, nothing else.
func checkUnpacked(t *testing.T, s *image.Store, img image.Image) {
	t.Helper()
	dirs := s.LayerDirs(img)
	if len(dirs) != 2 {
		t.Fatalf("%d layer dirs, want 2", len(dirs))
	}
	top := dirs[0]
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout for gone: %v mode %o rdev %d, want a 0/0 char device", err, st.Mode, st.Rdev)
	}
	val := make([]byte, 8)
	n, err := unix.Getxattr(filepath.Join(top, "a"), "trusted.overlay.opaque", val)
	if err != nil || string(val[:n]) != "y" {
		t.Errorf("opaque xattr on a: %q %v", val[:n], err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[1], "a", "x")); err != nil || string(b) != "x" {
		t.Errorf("bottom layer a/x: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dirs[1], "bin", "sh")); err != nil || l != "busybox" {
		t.Errorf("symlink bin/sh → %q %v", l, err)
	}
	if img.Config.WorkingDir != "/srv" || img.Config.User != "nobody" || img.Config.Labels["l"] != "v" {
		t.Errorf("config not kept: %+v", img.Config)
	}
}

func TestPullFromRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/app:1"
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, testImage(t)); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	var done int
	img, err := s.Pull(context.Background(), ref, func(p image.Progress) {
		if p.Done {
			done++
			if p.Total == 0 || p.Current != p.Total {
				t.Errorf("layer %d done at %d of %d compressed bytes", p.Index, p.Current, p.Total)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if done != 2 || len(img.RepoTags) != 1 || img.RepoTags[0] != ref {
		t.Errorf("progress done %d tags %v", done, img.RepoTags)
	}
	checkUnpacked(t, s, img)
	if got, err := s.Get(ref); err != nil || got.ID != img.ID {
		t.Errorf("get %s: %v", ref, err)
	}
	if _, err := s.Pull(context.Background(), strings.TrimPrefix(srv.URL, "http://")+"/test/missing:1", nil); err == nil {
		t.Error("pulling a missing image succeeded")
	}
	if _, err := s.Pull(context.Background(), "Bad::Ref", nil); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("bad reference: %v", err)
	}
}

func writeTar(t *testing.T, path string, files map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// legacySave writes the pre-25 `docker save` layout: <id>/layer.tar
// (uncompressed), <config>.json, manifest.json and repositories.
func legacySave(t *testing.T, path string, img v1.Image, tag string, diffIDs []string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if diffIDs != nil {
		cf = cf.DeepCopy()
		cf.RootFS.DiffIDs = nil
		for _, d := range diffIDs {
			cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, v1.Hash{Algorithm: "sha256", Hex: d})
		}
	}
	cfg, _ := json.Marshal(cf)
	files := map[string][]byte{"config0.json": cfg}
	layers, _ := img.Layers()
	var paths []string
	for i, l := range layers {
		rc, _ := l.Uncompressed()
		b, _ := io.ReadAll(rc)
		p := "layer" + string(rune('0'+i)) + "/layer.tar"
		files[p] = b
		paths = append(paths, p)
	}
	m, _ := json.Marshal([]map[string]any{{"Config": "config0.json", "RepoTags": []string{tag}, "Layers": paths}})
	files["manifest.json"] = m
	files["repositories"] = []byte(`{}`)
	writeTar(t, path, files)
}

// tarDirFiles packs an OCI layout dir (plus extra files) into one tar.
func tarDirFiles(t *testing.T, dir, path string, extra map[string][]byte) {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range extra {
		files[k] = v
	}
	writeTar(t, path, files)
}

func TestLoad(t *testing.T) {
	img := testImage(t)
	dir := t.TempDir()
	ctx := context.Background()

	tarballPath := filepath.Join(dir, "tarball.tar")
	tag, _ := name.NewTag("example.com/app:tarball")
	if err := tarball.WriteToFile(tarballPath, tag, img); err != nil {
		t.Fatal(err)
	}
	legacyPath := filepath.Join(dir, "legacy.tar")
	legacySave(t, legacyPath, img, "app:legacy", nil)

	// Docker 25+: an OCI layout plus manifest.json in one tar.
	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "app:oci"})); err != nil {
		t.Fatal(err)
	}
	cfgName, _ := img.ConfigName()
	layers, _ := img.Layers()
	var lpaths []string
	for _, l := range layers {
		d, _ := l.Digest()
		lpaths = append(lpaths, "blobs/sha256/"+d.Hex)
	}
	m, _ := json.Marshal([]map[string]any{{"Config": "blobs/sha256/" + cfgName.Hex, "RepoTags": []string{"app:docker25"}, "Layers": lpaths}})
	docker25Path := filepath.Join(dir, "docker25.tar")
	tarDirFiles(t, filepath.Join(dir, "oci"), docker25Path, map[string][]byte{"manifest.json": m})
	ociPath := filepath.Join(dir, "oci.tar")
	tarDirFiles(t, filepath.Join(dir, "oci"), ociPath, nil)

	tests := []struct{ name, path, tag string }{
		{"go-containerregistry tarball", tarballPath, "example.com/app:tarball"},
		{"legacy docker save", legacyPath, "app:legacy"},
		{"docker 25 OCI save", docker25Path, "app:docker25"},
		{"plain OCI layout", ociPath, "app:oci"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			imgs, err := s.Load(ctx, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || imgs[0].ID != cfgName.String() || len(imgs[0].RepoTags) != 1 || imgs[0].RepoTags[0] != tc.tag {
				t.Fatalf("loaded %+v, want %s tagged %s", imgs, cfgName, tc.tag)
			}
			checkUnpacked(t, s, imgs[0])
		})
	}

	t.Run("digest mismatch", func(t *testing.T) {
		p := filepath.Join(dir, "mismatch.tar")
		legacySave(t, p, img, "app:bad", []string{strings.Repeat("ab", 32), strings.Repeat("cd", 32)})
		s := openStore(t)
		_, err := s.Load(ctx, p)
		if !errors.Is(err, image.ErrDigestMismatch) {
			t.Fatalf("err = %v, want a digest mismatch", err)
		}
		if imgs, _ := s.List(); len(imgs) != 0 {
			t.Errorf("%d images stored after a failed load", len(imgs))
		}
	})
	t.Run("corrupt tarball", func(t *testing.T) {
		p := filepath.Join(dir, "corrupt.tar")
		b, _ := os.ReadFile(legacyPath)
		if err := os.WriteFile(p, b[:len(b)/3], 0o644); err != nil {
			t.Fatal(err)
		}
		s := openStore(t)
		if _, err := s.Load(ctx, p); err == nil {
			t.Fatal("loading a truncated tarball succeeded")
		}
		if _, err := s.Load(ctx, filepath.Join(dir, "missing.tar")); err == nil {
			t.Fatal("loading a missing file succeeded")
		}
	})
}

func TestImportAndRemove(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	root := t.TempDir()
	for p, body := range map[string]string{"bin/tool": "#!/bin/sh\n", "etc/conf": "c"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.Import(ctx, root, "tool:1")
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "root.tar")
	if err := os.WriteFile(tarPath, layerTar(t, entry{name: "etc/other", body: "o"}), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := s.Import(ctx, tarPath, "other")
	if err != nil {
		t.Fatal(err)
	}
	if b.RepoTags[0] != "other:latest" || len(a.Layers) != 1 {
		t.Errorf("tags %v layers %d", b.RepoTags, len(a.Layers))
	}
	if got, err := os.ReadFile(filepath.Join(s.LayerDirs(a)[0], "etc", "conf")); err != nil || string(got) != "c" {
		t.Errorf("imported file: %q %v", got, err)
	}
	if _, err := s.Import(ctx, root, "tool:2"); err != nil { // same content, same second: same image
		t.Fatal(err)
	}
	if did, err := s.Remove("tool:1", false, nil); err != nil || strings.Join(did, ",") != "Untagged: tool:1" {
		t.Fatalf("untag: %v %v", did, err)
	}
	inUse := func(id string) bool { return id == a.ID }
	if _, err := s.Remove("tool:2", false, inUse); !errors.Is(err, runtime.ErrConflict) {
		t.Errorf("removing an image in use: %v", err)
	}
	if did, err := s.Remove("tool:2", true, inUse); err != nil || strings.Join(did, ",") != "Untagged: tool:2" {
		t.Fatalf("forced remove of an image in use: %v %v, want it untagged only", did, err)
	}
	if _, err := os.Stat(s.LayerDirs(a)[0]); err != nil {
		t.Fatalf("layer of an image in use removed: %v", err)
	}
	if did, err := s.Remove(a.ID, false, nil); err != nil || strings.Join(did, ",") != "Deleted: "+a.ID {
		t.Fatalf("remove by id once unused: %v %v", did, err)
	}
	if _, err := os.Stat(s.LayerDirs(a)[0]); !os.IsNotExist(err) {
		t.Errorf("unused layer kept: %v", err)
	}
	if _, err := s.Get("tool:2"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("get removed: %v", err)
	}

	// Two images sharing their layers: removing one keeps the layers.
	img := testImage(t)
	img2, err := mutate.Config(img, v1.Config{Env: []string{"B=2"}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "two.tar")
	t1, _ := name.NewTag("one:1")
	t2, _ := name.NewTag("two:1")
	if err := tarball.MultiWriteToFile(p, map[name.Tag]v1.Image{t1: img, t2: img2}); err != nil {
		t.Fatal(err)
	}
	loaded, err := s.Load(ctx, p)
	if err != nil || len(loaded) != 2 {
		t.Fatalf("load two: %v %v", loaded, err)
	}
	if _, err := s.Remove("one:1", false, nil); err != nil {
		t.Fatal(err)
	}
	two, _ := s.Get("two:1")
	for _, d := range s.LayerDirs(two) {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("layer shared with two:1 removed: %v", err)
		}
	}
}

func TestUnpackCannotEscape(t *testing.T) {
	outside := t.TempDir()
	s := openStore(t)
	evil := layerTar(t,
		entry{name: "../../../" + filepath.Base(outside) + "/dotdot", body: "x"},
		entry{name: "abs", link: outside, typ: tar.TypeSymlink},
		entry{name: "abs/through-symlink", body: "x"},
	)
	p := filepath.Join(t.TempDir(), "evil.tar")
	if err := os.WriteFile(p, evil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Import(context.Background(), p, "evil")
	if err == nil {
		t.Error("a layer writing through an absolute symlink was accepted")
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Errorf("files written outside the layer dir: %v", ents)
	}
}

// TestTraversalNamesRefused: a name with a path traversal (or otherwise
// outside Docker's reference grammar) is refused by import, load, pull and
// lookups, with an error that says why; nothing is stored.
func TestTraversalNamesRefused(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := []string{"../../hosts/evil", "a/../b:1", "..", "a/..", "x/.hidden", "a/./b", "localhost:5000/../x", "a..b", "a//b", "..:5000/x"}
	for _, ref := range bad {
		if _, err := s.Import(ctx, root, ref); err == nil || !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), "bad image reference") {
			t.Errorf("Import as %q: %v", ref, err)
		}
		if _, err := image.Normalize(ref); err == nil {
			t.Errorf("Normalize(%q) accepted", ref)
		}
		if _, err := s.Pull(ctx, ref, nil); err == nil || !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("Pull(%q): %v", ref, err)
		}
	}
	legacy := filepath.Join(t.TempDir(), "legacy.tar")
	legacySave(t, legacy, testImage(t), "../../hosts/evil:1", nil)
	if imgs, err := s.Load(ctx, legacy); err == nil || !strings.Contains(err.Error(), "bad image reference") {
		t.Errorf("Load of a tarball tagged ../../hosts/evil: %+v, %v", imgs, err)
	}
	if imgs, err := s.List(); err != nil || len(imgs) != 0 {
		t.Errorf("stored %+v, %v", imgs, err)
	}
	for _, ref := range []string{"busybox", "library/busybox:1", "host:5000/a/b_c__d-e.f:v1", "127.0.0.1:5000/x", "[::1]:5000/x:y"} {
		if _, err := image.Normalize(ref); err != nil {
			t.Errorf("Normalize(%q): %v", ref, err)
		}
	}
}
