// Package backoff is berth's one retry delay: it starts at a minimum,
// doubles after each failure up to a maximum, and is waited out unless the
// caller's context ends first.
package backoff
