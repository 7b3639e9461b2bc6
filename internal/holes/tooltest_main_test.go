package holes

import (
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// TestMain reports, in one line, the tests skipped for a missing facility.
func TestMain(m *testing.M) { tooltest.Main(m) }
