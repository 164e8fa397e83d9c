// Package image stores container images for the embedded runtime: it pulls
// them from registries, loads `docker save` tarballs (legacy and OCI) and
// imports root filesystems, all with go-containerregistry, and unpacks each
// layer once per diffID into its own directory, shared between images, with
// OCI whiteouts converted to overlayfs form and path escapes made
// impossible by os.Root. A container's root is an overlay of LayerDirs.
//
// A Store is safe for concurrent use within one process; it keeps no
// goroutines and owns no channels.
package image
