package templates

import (
	"embed"
	"io/fs"
)

//go:embed *.tmpl *.lua
var files embed.FS

// Files returns the shipped templates.
func Files() fs.FS { return files }
