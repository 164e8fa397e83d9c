package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berthd/berth/runtime"
)

// DefaultPath is the PATH an imported image gets, as docker sets it.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Pull fetches ref from its registry (linux on this machine's
// architecture) and stores it under its tag.
func (s *Store) Pull(ctx context.Context, ref string, progress ProgressFunc) (Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return Image{}, fmt.Errorf("bad image reference %q: %w (%w)", ref, err, runtime.ErrInvalid)
	}
	if err := checkRepository(ref, r.Context()); err != nil {
		return Image{}, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}))
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	var tags []string
	if t, ok := r.(name.Tag); ok {
		tags = []string{familiar(t.Context()) + ":" + t.TagStr()}
	}
	stored, err := s.add(ctx, img, tags, progress)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	return stored, nil
}

// Load stores every image of a `docker save` tarball: the legacy format
// (manifest.json and per-image directories) and Docker 25+'s OCI layout
// with a manifest.json, or a plain OCI layout tar.
func (s *Store) Load(ctx context.Context, path string) ([]Image, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return s.load(ctx, path, path)
}

// LoadReader is Load of a tarball read from r (a client's upload). It is
// spooled to a file under the store first: the formats need random access.
func (s *Store) LoadReader(ctx context.Context, r io.Reader) ([]Image, error) {
	path, err := s.spool(ctx, r, "load-*.tar")
	if err != nil {
		return nil, fmt.Errorf("load: receive the tarball: %w", err)
	}
	defer os.Remove(path)
	return s.load(ctx, path, "tarball")
}

// ImportReader is Import of a root filesystem tar (optionally
// compressed) read from r.
func (s *Store) ImportReader(ctx context.Context, r io.Reader, tag string) (Image, error) {
	ft, err := Normalize(tag)
	if err != nil {
		return Image{}, err
	}
	path, err := s.spool(ctx, r, "import-*.tar")
	if err != nil {
		return Image{}, fmt.Errorf("import: receive the tarball: %w", err)
	}
	defer os.Remove(path)
	return s.importTar(ctx, path, "tarball", ft)
}

// spool copies r into a new file under the store's work space and
// returns its path.
func (s *Store) spool(ctx context.Context, r io.Reader, pattern string) (string, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), pattern)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, ctxReader{ctx, r})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// load stores the images of the tarball at path; what stands for it in
// errors.
func (s *Store) load(ctx context.Context, path, what string) ([]Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		imgs, lerr := s.loadOCILayout(ctx, path)
		if lerr != nil {
			return nil, fmt.Errorf("load %s: not a docker save or OCI layout tarball: %w", what, errors.Join(err, lerr))
		}
		return imgs, nil
	}
	var out []Image
	for i, d := range m {
		var tag *name.Tag
		if len(d.RepoTags) > 0 {
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return nil, fmt.Errorf("load %s: manifest entry %d: %w", what, i, err)
			}
			tag = &t
		} else if len(m) > 1 {
			return nil, runtime.Errorf(runtime.ErrInvalid, "load %s: manifest entry %d has no tag and is not the only image", what, i)
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", what, err)
		}
		var tags []string
		for _, rt := range d.RepoTags {
			ft, err := Normalize(rt)
			if err != nil {
				return nil, err
			}
			tags = append(tags, ft)
		}
		stored, err := s.add(ctx, img, tags, nil)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", what, err)
		}
		out = append(out, stored)
	}
	return out, nil
}

// loadOCILayout extracts an OCI layout tar and stores its images, tagged by
// their org.opencontainers.image.ref.name annotations.
func (s *Store) loadOCILayout(ctx context.Context, path string) ([]Image, error) {
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "oci-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := unpackLayer(f, tmp); err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(tmp)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		var tags []string
		for _, key := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
			if ref := d.Annotations[key]; ref != "" {
				if t, err := Normalize(ref); err == nil {
					tags = append(tags, t)
					break
				}
			}
		}
		stored, err := s.add(ctx, img, tags, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, stored)
	}
	return out, nil
}

// Import makes a one-layer image from a root filesystem, either a tar
// (optionally compressed) or a directory, and stores it as tag.
func (s *Store) Import(ctx context.Context, src, tag string) (Image, error) {
	ft, err := Normalize(tag)
	if err != nil {
		return Image{}, err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return Image{}, fmt.Errorf("import: %w", err)
	}
	if !fi.IsDir() {
		return s.importTar(ctx, src, src, ft)
	}
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "import-*.tar")
	if err != nil {
		return Image{}, err
	}
	defer os.Remove(f.Name())
	err = WriteDirTar(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", src, err)
	}
	return s.importTar(ctx, f.Name(), src, ft)
}

// importTar stores the root filesystem tar at path as the image ft; what
// stands for it in errors.
func (s *Store) importTar(ctx context.Context, path, what, ft string) (Image, error) {
	layer, err := tarball.LayerFromFile(path)
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", what, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", what, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goruntime.GOARCH
	cf.Created = v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
	cf.Config.Env = []string{DefaultPath}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return Image{}, err
	}
	stored, err := s.add(ctx, img, []string{ft}, nil)
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", what, err)
	}
	return stored, nil
}

// WriteDirTar writes the tree under dir as an uncompressed tar to w, paths
// relative to dir. Hard links are stored as copies.
func WriteDirTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
