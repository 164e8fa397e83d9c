// Package records defines the values berth keeps in its key/value store and
// hands to templates: the instance record of one service instance, the
// container record (exactly docker-gen's RuntimeContainer, so docker-gen
// templates run unchanged), the Docker daemon summary docker-gen exposes as
// $.Docker, the host record, and the key schema under which they live:
//
//	<prefix>/services/<service>/<host>/<container-id>   Instance (JSON)
//	<prefix>/containers/<host>/<container-id>           Container (JSON)
//	<prefix>/hosts/<host>                               Host (JSON)
//
// The package has no state and does no I/O; every function is pure.
package records
