package records

import (
	"encoding/json"
	"slices"
)

// LeftOut collects from instance records (the values under
// ServicesPrefix) what the registrar left out of each container's records
// and why (Instance.Invalid), by container id: one entry per field and
// value, in record order. Values that are not instance records are
// skipped.
func LeftOut(values [][]byte) map[string][]FieldError {
	out := map[string][]FieldError{}
	for _, v := range values {
		var in Instance
		if json.Unmarshal(v, &in) != nil || in.ID == "" || len(in.Invalid) == 0 {
			continue
		}
		for _, fe := range in.Invalid {
			if !slices.Contains(out[in.ID], fe) {
				out[in.ID] = append(out[in.ID], fe)
			}
		}
	}
	return out
}
