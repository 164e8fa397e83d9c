package owner

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berthd/berth/runtime"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrInUse: the state dir, bridge or subnet belongs to another berth
// daemon (or the address range to another interface). Errors made by
// InUsef match it with errors.Is; their text is the message alone.
var ErrInUse = errors.New("in use by another berth daemon or interface")

// InUsef formats an error that matches ErrInUse.
func InUsef(format string, args ...any) error {
	return runtime.Errorf(ErrInUse, format, args...)
}

const (
	// File holds the state dir's instance id.
	File = "owner.json"
	// LockFile is flocked by the daemon using the state dir.
	LockFile = "runtime.lock"
	// MarkLen is the length of a mark in hex digits.
	MarkLen = 8
	tagWord = "berth"
)

type instance struct {
	Instance string    `json:"instance"`
	Created  time.Time `json:"created"`
}

// Owner is a daemon's claim on its state dir, held from Claim to Release.
type Owner struct {
	Mark     string // MarkLen lowercase hex digits
	StateDir string // absolute, symlinks resolved
	lock     *os.File
}

// Claim takes stateDir for this process: it creates the directory and its
// instance id if missing and locks it. Another process holding the lock
// makes it fail with ErrInUse, naming that process.
func Claim(stateDir string) (*Owner, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	dir, err := canonical(stateDir)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, InUsef("state dir %s is in use by another berth daemon (%s): give each daemon its own state dir",
				dir, pidText(lockPid(dir)))
		}
		return nil, fmt.Errorf("state dir %s: lock: %w", dir, err)
	}
	release := func() { f.Close() }
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	inst, err := readInstance(dir)
	if errors.Is(err, os.ErrNotExist) {
		inst, err = writeInstance(dir)
	}
	if err != nil {
		release()
		return nil, err
	}
	return &Owner{Mark: mark(dir, inst), StateDir: dir, lock: f}, nil
}

// Release gives the state dir up (the resources stay marked).
func (o *Owner) Release() error {
	if o.lock == nil {
		return nil
	}
	err := o.lock.Close()
	o.lock = nil
	return err
}

// Tag is the text resources carry in their ifalias or rule comment:
// "berth <mark> <detail>".
func (o *Owner) Tag(detail string) string {
	t := tagWord + " " + o.Mark
	if detail != "" {
		t += " " + detail
	}
	return t
}

// ParseTag splits a Tag; ok is false for anything else.
func ParseTag(s string) (mark, detail string, ok bool) {
	f := strings.SplitN(s, " ", 3)
	if len(f) < 2 || f[0] != tagWord || !IsMark(f[1]) {
		return "", "", false
	}
	if len(f) == 3 {
		detail = f[2]
	}
	return f[1], detail, true
}

// IsMark reports whether s has the form of a mark.
func IsMark(s string) bool {
	if len(s) != MarkLen {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Mark is the mark of the daemon of stateDir, without claiming it;
// os.ErrNotExist when no daemon has used it.
func Mark(stateDir string) (string, error) {
	dir, err := canonical(stateDir)
	if err != nil {
		return "", err
	}
	inst, err := readInstance(dir)
	if err != nil {
		return "", err
	}
	return mark(dir, inst), nil
}

// Describe names the daemon of stateDir whose mark is mark, with whether
// it runs: "the berth daemon with state dir /var/lib/berth (running, pid
// 42)". ok is false when stateDir no longer belongs to that mark (removed,
// or created again), so what carries the mark is left over.
func Describe(stateDir, mark string) (desc string, ok bool) {
	if m, err := Mark(stateDir); err != nil || m != mark {
		return fmt.Sprintf("a berth daemon whose state dir %s is gone", stateDir), false
	}
	dir, _ := canonical(stateDir)
	state := "not running; its containers may still run"
	if pid, running := Running(dir); running {
		state = "running, " + pidText(pid)
	}
	return fmt.Sprintf("the berth daemon with state dir %s (%s)", dir, state), true
}

// Running reports whether a process holds stateDir's lock, and its pid
// (0 if unknown).
func Running(stateDir string) (pid int, running bool) {
	f, err := os.Open(filepath.Join(stateDir, LockFile))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		return 0, false
	}
	return lockPid(stateDir), true
}

func lockPid(dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, LockFile))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func pidText(pid int) string {
	if pid <= 0 {
		return "pid unknown"
	}
	return "pid " + strconv.Itoa(pid)
}

func canonical(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs, nil
}

func mark(dir string, inst instance) string {
	sum := sha256.Sum256([]byte(dir + "\x00" + inst.Instance))
	return hex.EncodeToString(sum[:])[:MarkLen]
}

func readInstance(dir string) (instance, error) {
	var inst instance
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return inst, err
	}
	if err := json.Unmarshal(b, &inst); err != nil || inst.Instance == "" {
		return inst, fmt.Errorf("state dir %s: %s is damaged (%v): it identifies this daemon's containers, restore it or remove it to start over", dir, File, err)
	}
	return inst, nil
}

func writeInstance(dir string) (instance, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	inst := instance{Instance: hex.EncodeToString(b), Created: time.Now().UTC()}
	out, _ := json.MarshalIndent(inst, "", "  ")
	p := filepath.Join(dir, File)
	if err := os.WriteFile(p+".tmp", append(out, '\n'), 0o600); err != nil {
		return inst, fmt.Errorf("state dir: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return inst, fmt.Errorf("state dir: %w", err)
	}
	return inst, nil
}
