package embedded_test

import (
	"testing"

	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

var fx *embeddedtest.Fixtures

func TestMain(m *testing.M) { embeddedtest.Main(m, &fx) }
