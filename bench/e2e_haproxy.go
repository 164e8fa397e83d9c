package bench

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/templates"
)

type haproxyProcess struct{ *realparts.HAProxy }

func (h haproxyProcess) addr() string { return h.Addr }
func (h haproxyProcess) conf() string { return h.Conf }
func (h haproxyProcess) start() error { return h.Start() }
func (h haproxyProcess) stop()        { h.Stop() }
func (h haproxyProcess) log() string  { return h.Log() }

// workers counts the master's children: in master-worker mode each is one
// worker generation, old ones finishing their connections included.
func (h haproxyProcess) workers() int {
	pid := h.MasterPID()
	if pid == 0 {
		return 0
	}
	p := strconv.Itoa(pid)
	kids, err := os.ReadFile("/proc/" + p + "/task/" + p + "/children")
	if err != nil {
		return 0
	}
	return len(strings.Fields(string(kids)))
}

// haproxyBench prepares HAProxy and the shipped haproxy.cfg.tmpl with
// live = "haproxy" in tmp; HAProxy's directory is the live directory.
func haproxyBench(tmp, reloads string) (proxyProcess, config.Template, map[string]string, error) {
	dir := filepath.Join(tmp, "haproxy")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, config.Template{}, nil, err
	}
	h, err := realparts.NewHAProxy(dir)
	if err != nil {
		return nil, config.Template{}, nil, err
	}
	data, err := fs.ReadFile(templates.Files(), "haproxy.cfg.tmpl")
	if err != nil {
		return nil, config.Template{}, nil, err
	}
	src := filepath.Join(tmp, "haproxy.cfg.tmpl")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		return nil, config.Template{}, nil, err
	}
	tmpl := config.Template{
		Name: "haproxy", Src: src, Origin: "bench",
		Options:  dialect.Options{Dialect: dialect.Native},
		Prefixes: []string{"/berth/services/"},
		Spec: render.Spec{Name: "haproxy", Dest: h.Conf, Check: h.CheckCommand(),
			Reload: fmt.Sprintf("if [ -s %[1]s ]; then echo >> %[2]s; kill -USR2 $(cat %[1]s); fi", h.PIDFile(), reloads)},
		Live: "haproxy", LiveDir: dir,
	}
	return haproxyProcess{h}, tmpl, map[string]string{"BERTH_HAPROXY_LISTEN": h.Addr}, nil
}
