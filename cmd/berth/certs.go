package main

import (
	"cmp"
	"log/slog"
	"os"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/store/backend"
)

// certDir is the certificate directory berth up reads with these flags
// and files: the first file's [certs] dir, or <state_dir>/certs, the
// state dir found as berth up finds it. Without [certs] dir, an [acme]
// certs_dir is it: the templates read the certificates ACME writes.
func certDir(stateDirFlag string, files []*config.File) string {
	var file config.File
	if len(files) > 0 {
		file = *files[0]
	}
	if file.Certs.Dir == "" && file.ACME.DirectoryURL != "" && file.ACME.CertsDir != "" {
		return file.ACME.CertsDir
	}
	return file.Certs.DirFor(stateDirFor(stateDirFlag, file))
}

// stateDirFor is the state dir as berth up finds it: the flag, else
// BERTH_STATE_DIR, else [daemon] state_dir, else the default.
func stateDirFor(stateDirFlag string, file config.File) string {
	return cmp.Or(stateDirFlag, os.Getenv("BERTH_STATE_DIR"), file.Daemon.StateDir, backend.DefaultStateDir())
}

// acmeEnv is the templates' environment outside berth up (nil: the
// process's), with berth up's BERTH_ACME_CHALLENGE when [acme] is on.
func acmeEnv(stateDirFlag string, files []*config.File) map[string]string {
	if len(files) == 0 {
		return nil
	}
	return daemon.ACMETemplateEnv(nil, files[0].ACME, stateDirFor(stateDirFlag, *files[0]))
}

// readCerts is the certificate directory's valid pairs now (bad ones are
// logged and left out), as a one-shot render sees them.
func readCerts(dir string, log *slog.Logger) *certs.Set {
	cs := certs.New(dir, certs.WithLogger(log))
	cs.Scan()
	set, _ := cs.Current()
	return set
}
