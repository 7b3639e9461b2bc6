package run_test

import (
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// TestMain reports, in one line, the tests skipped for missing tools.
func TestMain(m *testing.M) { tooltest.Main(m) }
