package remote_test

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

type v1Update = v1.Update
