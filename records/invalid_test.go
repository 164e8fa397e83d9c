package records_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/berthd/berth/records"
)

func TestLeftOut(t *testing.T) {
	host := records.FieldError{Field: "VIRTUAL_HOST", Value: "a;b", Reason: `contains ";"`}
	weight := records.FieldError{Field: "SERVICE_WEIGHT", Value: "x", Reason: "not a number"}
	rec := func(id, service string, invalid ...records.FieldError) []byte {
		b, _ := json.Marshal(records.Instance{ID: id, Service: service, Invalid: invalid})
		return b
	}
	got := records.LeftOut([][]byte{
		rec("c1", "web", host, weight),
		rec("c1", "admin", host, weight), // a second service of c1 (SERVICE_<port>_NAME): the same fields once
		rec("c2", "web"),
		[]byte("not json"),
		rec("c3", "api", weight),
	})
	want := map[string][]records.FieldError{"c1": {host, weight}, "c3": {weight}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LeftOut = %v, want %v", got, want)
	}
}
