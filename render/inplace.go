package render

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// An in-place check (Spec.CheckInPlace) validates the output where the
// checked program will load it: a conf.d fragment is only valid inside the
// configuration that includes it, and a staged file beside it, named
// .default.conf.berth-NNN, matches no include pattern. The new file is
// swapped in, the check runs against the real configuration, and on
// failure the previous file is swapped back before any reload; both swaps
// are atomic renames.
//
// Before the swap-in, the previous file is kept as a rollback file beside
// the destination (rollbackPath, or absentPath when there was none). A
// renderer that dies between the swap-in and the verdict leaves it behind;
// the next cycle on the destination puts the previous file back first
// (recoverInPlace), so an unchecked file never outlives its check.

// rollbackPath holds the destination's previous content, with its mode and
// owner, during an in-place check.
func rollbackPath(dest string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".rollback.berth")
}

// absentPath marks an in-place check of a destination that did not exist.
func absentPath(dest string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".rollback-none.berth")
}

// swapChecked swaps st in over the destination, runs the check on the
// real configuration ({{.src}} is Dest), and swaps prev back if the check
// fails. restored reports that the destination holds prev again; when the
// check failed and restoring did not work either, the error says so.
func (r *Renderer) swapChecked(ctx context.Context, s Spec, st *staged, prev current) (restored bool, err error) {
	if err := keepRollback(r, s.Dest, prev); err != nil {
		return true, err
	}
	if err := st.swap(r.log); err != nil {
		dropRollback(s.Dest)
		return true, err
	}
	checkErr := r.check(ctx, s, s.Dest)
	if checkErr == nil {
		dropRollback(s.Dest)
		return false, nil
	}
	if err := r.putBack(s, prev); err != nil {
		// The rollback file stays: the next cycle tries again.
		return false, fmt.Errorf("%w; in place: restoring the previous file failed: %w", checkErr, err)
	}
	dropRollback(s.Dest)
	return true, fmt.Errorf("%w; in place: previous file restored", checkErr)
}

// tryInPlace is Try for an in-place check: swap in, check, and always
// swap the previous file back. Nothing is reloaded.
func (r *Renderer) tryInPlace(ctx context.Context, s Spec, out []byte) error {
	if err := r.recoverInPlace(s.Dest); err != nil {
		return err
	}
	prev, err := readCurrent(s.Dest)
	if err != nil {
		return err
	}
	st, err := stage(s.Dest, out, want(s, prev))
	if err != nil {
		return err
	}
	defer st.discard()
	if err := keepRollback(r, s.Dest, prev); err != nil {
		return err
	}
	if err := st.swap(r.log); err != nil {
		dropRollback(s.Dest)
		return err
	}
	checkErr := r.check(ctx, s, s.Dest)
	if err := r.putBack(s, prev); err != nil {
		return errors.Join(checkErr, fmt.Errorf("in place: restoring the previous file failed: %w", err))
	}
	dropRollback(s.Dest)
	return checkErr
}

// keepRollback saves prev as the rollback file of dest.
func keepRollback(r *Renderer, dest string, prev current) error {
	if !prev.exists {
		if err := replace(r.log, absentPath(dest), nil, attrs{mode: 0o600, uid: -1, gid: -1}); err != nil {
			return fmt.Errorf("in place: %w", err)
		}
		return nil
	}
	if err := replace(r.log, rollbackPath(dest), prev.data, prev.attrs()); err != nil {
		return fmt.Errorf("in place: keep the previous file: %w", err)
	}
	return nil
}

func dropRollback(dest string) {
	os.Remove(rollbackPath(dest))
	os.Remove(absentPath(dest))
}

// recoverInPlace puts back the previous file of an in-place check that a
// dead renderer left unfinished.
func (r *Renderer) recoverInPlace(dest string) error {
	if _, err := os.Lstat(absentPath(dest)); err == nil {
		if err := os.Remove(dest); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("in place: remove the file an interrupted check swapped in: %w", err)
		}
		dropRollback(dest)
		r.log.Warn("removed the file an interrupted in-place check had swapped in", "dest", dest)
		return nil
	}
	fi, err := os.Stat(rollbackPath(dest))
	if err != nil {
		return nil // the common case: nothing to recover
	}
	data, err := os.ReadFile(rollbackPath(dest))
	if err != nil {
		return fmt.Errorf("in place: read the rollback file: %w", err)
	}
	a := attrs{mode: fi.Mode().Perm(), uid: -1, gid: -1, keepOnly: true}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		a.uid, a.gid = int(st.Uid), int(st.Gid)
	}
	if err := replace(r.log, dest, data, a); err != nil {
		return fmt.Errorf("in place: restore the file an interrupted check replaced: %w", err)
	}
	dropRollback(dest)
	r.log.Warn("restored the file an interrupted in-place check had replaced", "dest", dest)
	return nil
}
