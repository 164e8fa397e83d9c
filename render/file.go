package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/atomicfile"
)

// defaultMode is the mode of a new destination whose Spec sets none.
const defaultMode os.FileMode = 0o644

// current is what a destination holds before a render: its content and
// attributes, so that the render can be compared with it and, if the
// reload fails, put back.
type current struct {
	exists   bool
	data     []byte
	mode     os.FileMode
	uid, gid int
}

// attrs are the attributes to give a copy of the current file (backup,
// restore); its owner is carried over where the process may.
func (c current) attrs() attrs {
	return attrs{mode: c.mode, uid: c.uid, gid: c.gid, keepOnly: true}
}

// resolveDest follows a destination that is a symbolic link to the file it
// names, so that the link stays a link (sites-enabled/x → sites-available/x)
// and the file behind it is replaced — also when that file does not exist
// yet. Anything else is returned as is.
//
// A link is followed only if nobody but root or berth's own user could
// have planted it: otherwise a user who can write the destination's
// directory could point berth's output at /etc/passwd.
func resolveDest(dest string) (string, error) {
	for hops := 0; ; hops++ {
		fi, err := os.Lstat(dest)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return dest, nil
		}
		if hops == 40 {
			return "", fmt.Errorf("destination %s: too many levels of symbolic links", dest)
		}
		if err := trustLink(dest, fi); err != nil {
			return "", err
		}
		target, err := os.Readlink(dest)
		if err != nil {
			return "", fmt.Errorf("destination %s: %w", dest, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(dest), target)
		}
		dest = filepath.Clean(target)
	}
}

// trustLink refuses a symbolic link that belongs to someone other than
// root or berth's user, or that lies in a directory group or others can
// write.
func trustLink(link string, fi os.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("destination %s is a symbolic link owned by uid %d: refusing to follow it", link, st.Uid)
	}
	dir := filepath.Dir(link)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("destination %s: %w", link, err)
	}
	if di.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("destination %s is a symbolic link in %s, which group or others can write: refusing to follow it", link, dir)
	}
	return nil
}

// readCurrent reads the destination. A missing file is not an error; a
// directory or any other non-regular file is (checked before opening, so
// that a FIFO cannot block the render).
func readCurrent(dest string) (current, error) {
	fi, err := os.Stat(dest)
	if errors.Is(err, fs.ErrNotExist) {
		return current{}, nil
	}
	if err != nil {
		return current{}, fmt.Errorf("read destination: %w", err)
	}
	if fi.IsDir() {
		return current{}, fmt.Errorf("destination %s is a directory", dest)
	}
	if !fi.Mode().IsRegular() {
		return current{}, fmt.Errorf("destination %s is not a regular file (%s)", dest, fi.Mode().Type())
	}
	f, err := os.Open(dest)
	if err != nil {
		return current{}, fmt.Errorf("read destination: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return current{}, fmt.Errorf("read destination: %w", err)
	}
	data, err := readAll(f, fi.Size())
	if err != nil {
		return current{}, fmt.Errorf("read destination %s: %w", dest, err)
	}
	c := current{exists: true, data: data, mode: fi.Mode().Perm(), uid: -1, gid: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		c.uid, c.gid = int(st.Uid), int(st.Gid)
	}
	return c, nil
}

// readAll reads f to its end into a buffer sized from its stat, as
// os.ReadFile does: one allocation when the size is right.
func readAll(f *os.File, size int64) ([]byte, error) {
	data := make([]byte, 0, size+1)
	for {
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
	}
}

// attrs are the attributes a destination must end up with.
type attrs struct {
	mode     os.FileMode
	uid, gid int  // -1: leave as created
	keepOnly bool // the owner only carries the old file's over: not being allowed to is no error
}

// want resolves a Spec's attributes against the current destination: unset
// mode and owner keep what the destination has (a new file: 0644, owned by
// the process).
func want(s Spec, cur current) attrs {
	a := attrs{mode: s.Mode.Perm(), uid: -1, gid: -1}
	if s.Mode == 0 {
		a.mode = defaultMode
		if cur.exists {
			a.mode = cur.mode
		}
	}
	if cur.exists {
		a.uid, a.gid, a.keepOnly = cur.uid, cur.gid, s.UID == nil && s.GID == nil
	}
	if s.UID != nil {
		a.uid = *s.UID
	}
	if s.GID != nil {
		a.gid = *s.GID
	}
	return a
}

// unchanged reports whether the destination already holds data with the
// wanted attributes: same bytes, same mode, same owner.
func unchanged(cur current, data []byte, a attrs) bool {
	return cur.exists && cur.mode == a.mode &&
		(a.uid < 0 || cur.uid == a.uid) && (a.gid < 0 || cur.gid == a.gid) &&
		bytes.Equal(cur.data, data)
}

// stagePattern is the glob of dest's staging files (os.CreateTemp's "*"
// goes at the end).
// staleStaging is how old a staging file must be before a sweep removes it.
const staleStaging = time.Minute

func stagePattern(dest string) string {
	dir, base := filepath.Split(dest)
	return filepath.Join(dir, "."+base+".berth-*")
}

// sweepStaged removes staging files of dest that a renderer killed
// mid-write left behind.
func sweepStaged(log *slog.Logger, dest string) {
	stale, _ := filepath.Glob(stagePattern(dest))
	for _, f := range stale {
		// A young one may be another process's render in progress (a
		// one-shot berth render beside the daemon): leave it.
		if fi, err := os.Lstat(f); err != nil || time.Since(fi.ModTime()) < staleStaging {
			continue
		}
		if err := os.Remove(f); err == nil {
			log.Info("removed a staging file left by an interrupted render", "file", f)
		}
	}
}

// staged is a new version of a destination, written and fsynced to a
// temporary file in the destination's directory (so that a check sees it
// beside the files it includes, and the swap is a rename on one file
// system). Exactly one of swap and discard ends it; discard after a swap
// does nothing.
type staged struct {
	path string // the temporary file
	dest string
	data []byte
	a    attrs
	done bool
}

// stage writes data with attributes a to a temporary file beside dest.
// On error nothing is left behind.
func stage(dest string, data []byte, a attrs) (_ *staged, err error) {
	f, err := os.CreateTemp(filepath.Dir(dest), filepath.Base(stagePattern(dest)))
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	if err = f.Sync(); err != nil {
		return nil, fmt.Errorf("stage %s: fsync: %w", dest, err)
	}
	if err = applyAttrs(f, a); err != nil {
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	if err = f.Close(); err != nil {
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	return &staged{path: f.Name(), dest: dest, data: data, a: a}, nil
}

// discard removes the staged file unless it was swapped in.
func (s *staged) discard() {
	if !s.done {
		s.done = true
		os.Remove(s.path)
	}
}

// swap renames the staged file over the destination and fsyncs the
// directory. Readers see the old file or the new one, never a mix, and so
// does a reader after a crash at any point.
//
// If the rename fails with EBUSY or EXDEV — dest is a single file
// bind-mounted into a container, whose inode must not change — swap falls
// back to rewriting dest in place under an exclusive flock, and logs that
// it did. On error the staged file is gone and dest keeps its content: on
// the rename path it is never touched; on the in-place path a failed write
// is undone, and the error says so if even that failed.
func (s *staged) swap(log *slog.Logger) error {
	defer s.discard()
	if err := os.Rename(s.path, s.dest); err != nil {
		if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("swap %s: %w", s.dest, err)
		}
		log.Warn("rename over destination failed, writing it in place (single-file bind mount?)", "dest", s.dest, "err", err)
		return writeInPlace(s.dest, s.data, s.a)
	}
	s.done = true
	if err := atomicfile.SyncDir(filepath.Dir(s.dest)); err != nil {
		return fmt.Errorf("swap %s: %w", s.dest, err)
	}
	return nil
}

// replace atomically replaces dest with data: stage, then swap.
func replace(log *slog.Logger, dest string, data []byte, a attrs) error {
	s, err := stage(dest, data, a)
	if err != nil {
		return err
	}
	return s.swap(log)
}

// applyAttrs sets mode and owner on an open file.
func applyAttrs(f *os.File, a attrs) error {
	if err := f.Chmod(a.mode); err != nil {
		return err
	}
	if a.uid >= 0 || a.gid >= 0 {
		if err := f.Chown(a.uid, a.gid); err != nil && !(a.keepOnly && errors.Is(err, fs.ErrPermission)) {
			return err
		}
	}
	return nil
}

// writeInPlace rewrites dest's content without replacing its inode, under
// an exclusive flock so that cooperating writers do not interleave. It is
// not atomic for readers; it is the fallback for bind-mounted files only.
func writeInPlace(dest string, data []byte, a attrs) error {
	f, err := os.OpenFile(dest, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("write %s in place: %w", dest, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("write %s in place: flock: %w", dest, err)
	}
	prev, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("write %s in place: read the current content: %w", dest, err)
	}
	// Write first, truncate after: a shorter file never passes through
	// empty. A write that fails half-way (disk full) puts the previous
	// content back; only if that fails too is the destination damaged.
	if err := overwrite(f, data); err != nil {
		if rerr := overwrite(f, prev); rerr != nil {
			return fmt.Errorf("write %s in place: %w; putting the previous content back failed too, the file may be damaged: %w", dest, err, rerr)
		}
		return fmt.Errorf("write %s in place: %w (previous content kept)", dest, err)
	}
	if err := applyAttrs(f, a); err != nil {
		return fmt.Errorf("write %s in place: %w", dest, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s in place: fsync: %w", dest, err)
	}
	return nil
}

// overwrite makes f hold exactly data.
func overwrite(f *os.File, data []byte) error {
	if _, err := f.WriteAt(data, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(data)))
}
