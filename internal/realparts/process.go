package realparts

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startTied starts cmd so that it is killed if the process dies
// without cleaning up (a panic, a -timeout kill), and returns the channel
// that receives cmd.Wait's result.
//
// Pdeathsig follows the OS thread that started the child, not the process:
// the child is started from a thread kept for it alone until it exits, so
// that a goroutine ending while locked to its thread (network-namespace
// code does that) cannot take the child down with it.
func startTied(cmd *exec.Cmd) (chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	waitErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waitErr <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return waitErr, nil
}
