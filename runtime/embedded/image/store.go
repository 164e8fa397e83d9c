package image

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/berthd/berth/runtime"
)

// ErrDigestMismatch reports layer content that does not hash to the digest
// the image declares.
var ErrDigestMismatch = errors.New("digest mismatch")

// Image is one stored image.
type Image struct {
	ID       string    `json:"id"`        // config digest, "sha256:…"
	RepoTags []string  `json:"repo_tags"` // familiar form: "busybox:latest", "127.0.0.1:5000/app:1"
	Layers   []string  `json:"layers"`    // diffIDs, bottom first
	Config   v1.Config `json:"config"`
	Created  time.Time `json:"created"`
	Size     int64     `json:"size"` // bytes of layer blobs as stored by the source
}

// ShortID is the first 12 hex digits of the ID, as docker prints it.
func (i Image) ShortID() string {
	h := strings.TrimPrefix(i.ID, "sha256:")
	return h[:min(12, len(h))]
}

// Store keeps images under one directory:
//
//	layers/<diffID hex>/   one unpacked layer, shared between images
//	images/<ID hex>.json   one Image record
//	tmp/                   work space, emptied on Open
type Store struct {
	root string
	mu   sync.Mutex // serialises writers; readers read whole files
}

// Open opens (creating if needed) the image store rooted at dir.
func Open(dir string) (*Store, error) {
	for _, sub := range []string{"layers", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	// Half-finished work from a crash is garbage.
	tmp := filepath.Join(dir, "tmp")
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
	}
	s := &Store{root: dir}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.gcLayers(); err != nil {
		return nil, err
	}
	return s, nil
}

// LayerDirs returns the unpacked layer directories of img, top first, the
// order overlayfs wants for lowerdir.
func (s *Store) LayerDirs(img Image) []string {
	dirs := make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- {
		dirs = append(dirs, s.layerDir(img.Layers[i]))
	}
	return dirs
}

func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.root, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

func (s *Store) recordPath(id string) string {
	return filepath.Join(s.root, "images", strings.TrimPrefix(id, "sha256:")+".json")
}

// List returns every image, newest first.
func (s *Store) List() ([]Image, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "images"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	imgs := make([]Image, 0, len(ents))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		img, err := s.readRecord(filepath.Join(s.root, "images", e.Name()))
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Created.After(imgs[j].Created) })
	return imgs, nil
}

func (s *Store) readRecord(path string) (Image, error) {
	var img Image
	b, err := os.ReadFile(path)
	if err != nil {
		return img, fmt.Errorf("read image record: %w", err)
	}
	if err := json.Unmarshal(b, &img); err != nil {
		return img, fmt.Errorf("image record %s: %w", path, err)
	}
	return img, nil
}

func (s *Store) writeRecord(img Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.recordPath(img.ID), b)
}

// writeFileAtomic writes b to path via a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Get finds an image by tag ("busybox", "busybox:1", "host:5000/a:b"), by
// ID ("sha256:…") or by an ID prefix of at least 4 hex digits.
func (s *Store) Get(ref string) (Image, error) {
	imgs, err := s.List()
	if err != nil {
		return Image{}, err
	}
	return find(imgs, ref)
}

func find(imgs []Image, ref string) (Image, error) {
	hexRef := strings.TrimPrefix(ref, "sha256:")
	if len(hexRef) >= 4 && isHex(hexRef) {
		var hits []Image
		for _, img := range imgs {
			if strings.HasPrefix(strings.TrimPrefix(img.ID, "sha256:"), hexRef) {
				hits = append(hits, img)
			}
		}
		if len(hits) == 1 {
			return hits[0], nil
		}
		if len(hits) > 1 {
			return Image{}, runtime.Errorf(runtime.ErrInvalid, "image id prefix %q is ambiguous", ref)
		}
	}
	tag, err := Normalize(ref)
	if err != nil {
		return Image{}, err
	}
	for _, img := range imgs {
		if slices.Contains(img.RepoTags, tag) {
			return img, nil
		}
	}
	return Image{}, runtime.Errorf(runtime.ErrNotFound, "no such image: %s", ref)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s[:len(s)&^1])
	return err == nil
}

// Normalize returns the familiar form of an image reference, as docker
// prints it: "busybox" → "busybox:latest", "docker.io/library/x" →
// "x:latest", "host:5000/a" → "host:5000/a:latest". A reference outside
// Docker's grammar ("../x", "a/../b", "x/.hidden") is refused.
func Normalize(ref string) (string, error) {
	t, err := name.NewTag(ref)
	if err != nil {
		return "", fmt.Errorf("bad image reference %q: %w (%w)", ref, err, runtime.ErrInvalid)
	}
	if err := checkRepository(ref, t.Context()); err != nil {
		return "", err
	}
	return familiar(t.Context()) + ":" + t.TagStr(), nil
}

func familiar(r name.Repository) string {
	repo := r.RepositoryStr()
	if r.RegistryStr() == name.DefaultRegistry {
		return strings.TrimPrefix(repo, "library/")
	}
	return r.RegistryStr() + "/" + repo
}

// Progress reports the unpacking of one layer.
type Progress struct {
	Layer   string // diffID
	Index   int    // 1-based
	Count   int
	Current int64 // bytes read so far: of the compressed blob when Total is set
	Total   int64 // size of the compressed blob; 0 when unknown
	Cached  bool  // the layer was already present
	Done    bool
}

// ProgressFunc receives Progress updates; it must not block for long.
type ProgressFunc func(Progress)

// add stores img under tags: unpacks its missing layers, verifies each
// against its diffID, writes the record and moves the tags to it.
func (s *Store) add(ctx context.Context, img v1.Image, tags []string, progress ProgressFunc) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfgName, err := img.ConfigName()
	if err != nil {
		return Image{}, fmt.Errorf("image config: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, fmt.Errorf("image layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return Image{}, runtime.Errorf(runtime.ErrInvalid, "image has %d layers but its config lists %d diffIDs", len(layers), len(cfg.RootFS.DiffIDs))
	}
	rec := Image{ID: cfgName.String(), Config: cfg.Config, Created: cfg.Created.Time}
	if rec.Created.IsZero() {
		rec.Created = time.Now().UTC()
	}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return Image{}, err
		}
		diffID := cfg.RootFS.DiffIDs[i].String()
		if size, err := l.Size(); err == nil {
			rec.Size += size
		}
		if err := s.unpack(l, diffID, i+1, len(layers), progress); err != nil {
			return Image{}, err
		}
		rec.Layers = append(rec.Layers, diffID)
	}
	if err := s.retag(&rec, tags); err != nil {
		return Image{}, err
	}
	return rec, nil
}

// retag gives rec the tags, taking them from any other image; an image
// left with no tag and not rec itself keeps existing (dangling), as in
// docker.
func (s *Store) retag(rec *Image, tags []string) error {
	imgs, err := s.List()
	if err != nil {
		return err
	}
	for _, other := range imgs {
		if other.ID == rec.ID {
			rec.RepoTags = other.RepoTags
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(other.RepoTags), func(t string) bool { return slices.Contains(tags, t) })
		if len(kept) != len(other.RepoTags) {
			other.RepoTags = kept
			if err := s.writeRecord(other); err != nil {
				return err
			}
		}
	}
	for _, t := range tags {
		if !slices.Contains(rec.RepoTags, t) {
			rec.RepoTags = append(rec.RepoTags, t)
		}
	}
	return s.writeRecord(*rec)
}

// unpack extracts one layer into layers/<diffID> unless it is there.
func (s *Store) unpack(l v1.Layer, diffID string, idx, count int, progress ProgressFunc) error {
	// With someone watching, count the compressed bytes of a registry
	// blob (their total is known); a docker save layer would be
	// compressed on the fly for that, so it is read as is.
	compressed := progress != nil
	if progress == nil {
		progress = func(Progress) {}
	}
	dst := s.layerDir(diffID)
	if _, err := os.Stat(dst); err == nil {
		progress(Progress{Layer: diffID, Index: idx, Count: count, Cached: true, Done: true})
		return nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	var total int64
	pr := &progressReader{report: func(n int64) {
		progress(Progress{Layer: diffID, Index: idx, Count: count, Current: n, Total: total})
	}}
	rc, total, err := openLayer(l, pr, compressed)
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer rc.Close()
	got, err := unpackLayer(rc, tmp)
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	if got != diffID {
		return fmt.Errorf("layer %d: content hashes to %s, image declares %s: %w", idx, got, diffID, ErrDigestMismatch)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	progress(Progress{Layer: diffID, Index: idx, Count: count, Current: pr.n, Total: total, Done: true})
	return nil
}

// openLayer returns l's uncompressed content with pr counting the bytes
// fetched: with compressed, for a gzip or zstd blob, the compressed bytes,
// whose total is known up front and returned; else the uncompressed ones.
// The blob's digest is verified as it is read either way.
func openLayer(l v1.Layer, pr *progressReader, compressed bool) (io.ReadCloser, int64, error) {
	mt, err := l.MediaType()
	if err != nil {
		return nil, 0, err
	}
	var decompress func(io.Reader) (io.ReadCloser, error)
	switch mt {
	case types.DockerLayer, types.OCILayer:
		decompress = func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) }
	case types.OCILayerZStd:
		decompress = func(r io.Reader) (io.ReadCloser, error) {
			d, err := zstd.NewReader(r)
			if err != nil {
				return nil, err
			}
			return d.IOReadCloser(), nil
		}
	}
	size, serr := l.Size()
	if !compressed || decompress == nil || serr != nil {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, 0, err
		}
		pr.r = rc
		return readCloser{pr, rc}, 0, nil
	}
	blob, err := l.Compressed()
	if err != nil {
		return nil, 0, err
	}
	pr.r = blob
	dec, err := decompress(pr)
	if err != nil {
		blob.Close()
		return nil, 0, err
	}
	return readCloser{dec, multiCloser{dec, blob}}, size, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

type multiCloser []io.Closer

func (m multiCloser) Close() error {
	var errs []error
	for _, c := range m {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// progressReader counts bytes and reports at most every 256 KiB.
type progressReader struct {
	r      io.Reader
	n      int64
	last   int64
	report func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n-p.last >= 256<<10 {
		p.last = p.n
		p.report(p.n)
	}
	return n, err
}

// Remove untags ref, or deletes the image when ref is its ID or its last
// tag. inUse reports whether a container uses an image ID: such an image
// is refused, or with force only untagged (its layers stay while the
// container needs them). It returns what it did, docker-style
// ("Untagged: x", "Deleted: sha256:…").
func (s *Store) Remove(ref string, force bool, inUse func(id string) bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.List()
	if err != nil {
		return nil, err
	}
	img, err := find(imgs, ref)
	if err != nil {
		return nil, err
	}
	if tag, terr := Normalize(ref); terr == nil && slices.Contains(img.RepoTags, tag) && len(img.RepoTags) > 1 {
		img.RepoTags = slices.DeleteFunc(img.RepoTags, func(t string) bool { return t == tag })
		return []string{"Untagged: " + tag}, s.writeRecord(img)
	}
	var did []string
	for _, t := range img.RepoTags {
		did = append(did, "Untagged: "+t)
	}
	if inUse != nil && inUse(img.ID) {
		if !force {
			return nil, runtime.Errorf(runtime.ErrConflict, "image %s is in use by a container", ref)
		}
		// As docker does: forcing only untags an image a container uses;
		// it stays (dangling) until no container needs its layers.
		img.RepoTags = nil
		return did, s.writeRecord(img)
	}
	if err := os.Remove(s.recordPath(img.ID)); err != nil {
		return nil, fmt.Errorf("remove image %s: %w", img.ID, err)
	}
	did = append(did, "Deleted: "+img.ID)
	return did, s.gcLayers()
}

// gcLayers deletes layer directories no image references.
func (s *Store) gcLayers() error {
	imgs, err := s.List()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, img := range imgs {
		for _, l := range img.Layers {
			used[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	ents, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !used[e.Name()] {
			if err := os.RemoveAll(filepath.Join(s.root, "layers", e.Name())); err != nil {
				return fmt.Errorf("remove unused layer %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}
