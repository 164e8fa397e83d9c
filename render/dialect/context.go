package dialect

// Context returns the data the template's dot is when it renders in: for
// the native dialect .Services, .Containers, .Hosts, .Env and .Revision;
// for docker-gen the container list ($); nil for confd, whose templates
// read keys only (in.KVs). It is built exactly as Execute builds it, for
// berth render --context-dump.
func (t *Template) Context(in Input) (any, error) {
	x, err := newExec(t, in)
	if err != nil {
		return nil, err
	}
	x.end(false)
	return x.data, nil
}
