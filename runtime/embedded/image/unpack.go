package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// OCI whiteout markers, see the image-spec's layer.md.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// unpackLayer extracts the uncompressed layer tar r into dir (which must
// exist and be empty), converting whiteouts to overlayfs form. Every path
// is resolved inside dir through os.Root, so "../" and absolute symlinks
// cannot escape it. It returns the sha256 of the whole stream, read to EOF.
func unpackLayer(r io.Reader, dir string) (string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(r, h))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read layer tar: %w", err)
		}
		if err := unpackEntry(root, tr, hdr); err != nil {
			return "", fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	// Drain the tar padding so the digest covers the whole stream.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", fmt.Errorf("read layer tar: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// cleanName turns a tar entry name into a root-relative path, or "" for the
// root itself.
func cleanName(name string) string {
	p := path.Clean("/" + name)
	return strings.TrimPrefix(p, "/")
}

func unpackEntry(root *os.Root, tr *tar.Reader, hdr *tar.Header) error {
	name := cleanName(hdr.Name)
	if name == "" {
		return nil
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	switch {
	case base == whiteoutOpaque:
		return setOpaque(root, dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		return whiteout(root, dir, strings.TrimPrefix(base, whiteoutPrefix))
	}
	// A later entry for the same path replaces an earlier one, except that
	// a directory stays a directory.
	if fi, err := root.Lstat(name); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := root.RemoveAll(name); err != nil {
			return err
		}
	}
	mode := hdr.FileInfo().Mode()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		return root.Lchown(name, hdr.Uid, hdr.Gid)
	case tar.TypeLink:
		return root.Link(cleanName(hdr.Linkname), name)
	default:
		// Devices and fifos have no business in an image; skip them.
		return nil
	}
	if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	// Chmod after chown: chown clears setuid bits.
	if err := root.Chmod(name, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return root.Chtimes(name, hdr.AccessTime, hdr.ModTime)
}

// whiteout records the deletion of dir/name as overlayfs does: a 0/0
// character device.
func whiteout(root *os.Root, dir, name string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Mknodat(int(d.Fd()), name, unix.S_IFCHR, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mknod whiteout: %w", err)
	}
	return nil
}

// setOpaque marks dir as hiding everything below it in lower layers.
func setOpaque(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Fsetxattr(int(d.Fd()), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return fmt.Errorf("set opaque xattr: %w", err)
	}
	return nil
}
