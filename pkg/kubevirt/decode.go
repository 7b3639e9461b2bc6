package kubevirt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// scheme knows the KubeVirt v1 and CDI v1beta1 kinds. It is made on first
// use: registering every kind is 600 allocations that each command would
// otherwise pay at start, and only Decode needs them.
var scheme = sync.OnceValue(func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := kubevirtv1.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail at run time
	}
	if err := cdiv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
})

// Decode reads one manifest strictly into its API type, chosen by its
// apiVersion and kind: *kubevirtv1.VirtualMachine,
// *kubevirtv1.VirtualMachineInstance, *cdiv1.DataVolume, *cdiv1.DataSource
// or any other KubeVirt v1 or CDI v1beta1 kind.
//
// It decodes the way the API server's strict field validation does, with
// sigs.k8s.io/json: field names match case-sensitively, and an unknown or
// duplicate field is an error. (apimachinery's YAML serializer and
// sigs.k8s.io/yaml.UnmarshalStrict go through encoding/json, which matches
// names case-insensitively and so accepts "useserial" for "useSerial".)
//
// KubeVirt's VirtualMachineInstanceSpec has its own UnmarshalJSON, which
// calls encoding/json and so drops unknown fields below it silently, in
// any decoder. Decode therefore also encodes the decoded object again and
// requires every field of the manifest to be there: a field the types did
// not take is reported by its path.
func Decode(manifest []byte) (runtime.Object, error) {
	j, err := yaml.YAMLToJSONStrict(manifest)
	if err != nil {
		return nil, fmt.Errorf("kubevirt: decode: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, fmt.Errorf("kubevirt: decode: %w", err)
	}
	gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
	obj, err := scheme().New(gvk)
	if err != nil {
		return nil, fmt.Errorf("kubevirt: decode: unknown apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	strictErrs, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return nil, fmt.Errorf("kubevirt: decode %s: %w", tm.Kind, err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("kubevirt: decode %s: %w", tm.Kind, errors.Join(strictErrs...))
	}
	var in, out any
	if err := json.Unmarshal(j, &in); err != nil {
		return nil, fmt.Errorf("kubevirt: decode: %w", err)
	}
	back, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("kubevirt: decode %s: %w", tm.Kind, err)
	}
	if err := json.Unmarshal(back, &out); err != nil {
		return nil, fmt.Errorf("kubevirt: decode %s: %w", tm.Kind, err)
	}
	if err := allKnown(in, out, ""); err != nil {
		return nil, fmt.Errorf("kubevirt: decode %s: %w", tm.Kind, err)
	}
	return obj, nil
}

// allKnown reports the first field of in, a decoded manifest, that out,
// the same manifest after a trip through the API types, lacks.
func allKnown(in, out any, path string) error {
	switch in := in.(type) {
	case map[string]any:
		o, _ := out.(map[string]any)
		for k, v := range in {
			ov, ok := o[k]
			if !ok {
				return fmt.Errorf("unknown field %q", strings.TrimPrefix(path+"."+k, "."))
			}
			if err := allKnown(v, ov, path+"."+k); err != nil {
				return err
			}
		}
	case []any:
		o, _ := out.([]any)
		if len(o) != len(in) {
			return fmt.Errorf("field %q: list changed length", strings.TrimPrefix(path, "."))
		}
		for i, v := range in {
			if err := allKnown(v, o[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}
