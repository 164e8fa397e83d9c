// Package atomicfile replaces a small file atomically: the files berth's
// endpoint sinks keep beside a proxy (HAProxy's host map, nginx's
// endpoint file), which a restarted proxy reads whole or not at all.
package atomicfile
