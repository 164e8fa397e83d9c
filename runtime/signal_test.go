package runtime_test

import (
	"errors"
	"slices"
	"syscall"
	"testing"

	"github.com/berthd/berth/runtime"
)

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
		bad  bool
	}{
		{"", syscall.SIGKILL, false},
		{"KILL", syscall.SIGKILL, false},
		{"sigterm", syscall.SIGTERM, false},
		{"SIGHUP", syscall.SIGHUP, false},
		{"9", syscall.SIGKILL, false},
		{"15", syscall.SIGTERM, false},
		{"0", 0, true},
		{"65", 0, true},
		{"09", 0, true},
		{"-9", 0, true},
		{"NOPE", 0, true},
	} {
		got, err := runtime.ParseSignal(tc.in)
		if tc.bad {
			if !errors.Is(err, runtime.ErrInvalid) {
				t.Errorf("ParseSignal(%q) = %v, %v; want ErrInvalid", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestSpecCommand(t *testing.T) {
	img := struct{ entry, cmd []string }{[]string{"/entry"}, []string{"serve"}}
	for _, tc := range []struct {
		name            string
		spec            runtime.Spec
		wantEntry, want []string
	}{
		{"the image's", runtime.Spec{}, []string{"/entry"}, []string{"serve"}},
		{"Cmd replaces the image's", runtime.Spec{Cmd: []string{"check"}}, []string{"/entry"}, []string{"check"}},
		{"an entrypoint drops the image's Cmd", runtime.Spec{Entrypoint: []string{"/sh"}}, []string{"/sh"}, nil},
		{"an empty entrypoint clears it", runtime.Spec{Entrypoint: []string{""}, Cmd: []string{"/bin/x"}}, nil, []string{"/bin/x"}},
	} {
		entry, cmd := tc.spec.Command(img.entry, img.cmd)
		if !slices.Equal(entry, tc.wantEntry) || !slices.Equal(cmd, tc.want) {
			t.Errorf("%s: %q %q; want %q %q", tc.name, entry, cmd, tc.wantEntry, tc.want)
		}
	}
}
