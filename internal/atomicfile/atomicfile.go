package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces name with data and mode: a temporary file in the same
// directory, written, fsynced and renamed over it, so a reader sees the old
// content or the new one, never a mix. On error name is unchanged and no
// temporary file is left.
func Write(name string, data []byte, mode os.FileMode) error { return write(name, data, mode, true) }

// WriteUnsynced is Write without the fsync: readers still see the old
// content or the new one, but after a power loss name may hold neither.
// For a file that matters only while its writer runs (which writes it
// again when it starts), on a path where an fsync's milliseconds count.
func WriteUnsynced(name string, data []byte, mode os.FileMode) error {
	return write(name, data, mode, false)
}

func write(name string, data []byte, mode os.FileMode, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// WriteIfChanged is Write unless name already holds data.
func WriteIfChanged(name string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return Write(name, data, mode)
}

// SyncDir fsyncs directory dir, making a rename in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
