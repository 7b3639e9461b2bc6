module github.com/tinyvm-oci/tinyvm-oci

go 1.26.8

require (
	github.com/google/go-containerregistry v0.22.1 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	golang.org/x/arch v0.33.0 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)
