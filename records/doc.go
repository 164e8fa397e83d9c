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
// It is also the one place where routing metadata is validated (Check*,
// CheckHostList): the registrar uses it before a value becomes a record,
// and native templates use the same checks (checkHost, ...) on what they
// read back, because anyone who can write the store can write a record.
// An invalid value is described by a FieldError, kept on the instance
// record (Instance.Invalid). The hostile-input corpus the tests run through
// every field is in package recordstest.
//
// The package has no state and does no I/O; every function is pure.
package records
