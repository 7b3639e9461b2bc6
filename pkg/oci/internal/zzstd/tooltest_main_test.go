package zzstd

import (
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

func TestMain(m *testing.M) { tooltest.Main(m) }
