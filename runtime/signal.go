package runtime

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ParseSignal parses a signal as Docker's API and CLI take it: "KILL",
// "SIGKILL" or "9" (any case); "" is SIGKILL, as for docker kill. Anything
// else is an ErrInvalid error naming it.
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGKILL, nil
	}
	if n, err := strconv.Atoi(s); err == nil && strconv.Itoa(n) == s && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	if sig := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG")); sig != 0 {
		return sig, nil
	}
	return 0, Errorf(ErrInvalid, "invalid signal %q", s)
}
