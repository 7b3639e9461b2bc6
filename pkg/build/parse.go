package build

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
)

// sizeUnits are binary, as qemu-img reads them.
var sizeUnits = []struct {
	suffix string
	shift  uint
}{
	{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40},
	{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40},
	{"B", 0},
}

// ParseSize reads a disk size such as 512, 1MiB or 10GiB. Units are
// binary (K = KiB, as in qemu-img). The size must be a positive multiple
// of 512 bytes.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	num, shift := in, uint(0)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToLower(in), strings.ToLower(u.suffix)) {
			num, shift = strings.TrimSpace(in[:len(in)-len(u.suffix)]), u.shift
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad size %q: use a positive whole number of bytes with an optional unit, such as 512, 1MiB or 10GiB", s)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("bad size %q: larger than 8 EiB", s)
	}
	v := int64(n) << shift
	if v%512 != 0 {
		return 0, fmt.Errorf("bad size %q: %d bytes is not a multiple of 512", s, v)
	}
	return v, nil
}

// ParseEpoch reads SOURCE_DATE_EPOCH (seconds since 1970, UTC). Empty
// means formats.DefaultTime, so outputs never depend on the clock.
func ParseEpoch(s string) (time.Time, error) {
	if s == "" {
		return formats.DefaultTime, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("bad SOURCE_DATE_EPOCH %q: use whole seconds since 1970-01-01 UTC", s)
	}
	return time.Unix(n, 0).UTC(), nil
}
