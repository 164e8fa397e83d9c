package render

import "errors"

// Change is what applying one job would do to its destination.
type Change struct {
	Name string
	Dest string // as the job names it
	Preview
	// Diff is the unified diff from the destination's content (or
	// /dev/null) to the output; "" when the content is the same, and then
	// a Changed preview means only the mode or owner would change.
	Diff string
}

// Plan renders every job (guards included: a refused render is an error)
// and reports what applying it would change, without writing anything or
// running a command. A failing job does not hide the others: their
// changes are returned with the failures joined in the error.
func (r *Renderer) Plan(jobs []Job) ([]Change, error) {
	var (
		out  []Change
		errs []error
	)
	for _, job := range jobs {
		c, err := r.PlanJob(job)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

// PlanJob is Plan of one job.
func (r *Renderer) PlanJob(job Job) (Change, error) {
	p, err := r.Preview(job)
	if err != nil {
		return Change{}, err
	}
	c := Change{Name: job.Spec.name(), Dest: job.Spec.Dest, Preview: p}
	if p.Changed {
		old := job.Spec.Dest
		if !p.Exists {
			old = "/dev/null"
		}
		c.Diff = Diff(old, job.Spec.Dest+" (rendered)", p.Current, p.Output)
	}
	return c, nil
}

// Pending reports whether applying the planned changes would modify any
// destination (content, mode or owner).
func Pending(cs []Change) bool {
	for _, c := range cs {
		if c.Changed {
			return true
		}
	}
	return false
}
