package formats

import (
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Types {
		if seen[f.Type] || seen["ext:"+f.Ext] {
			t.Errorf("duplicate type or extension in row %q", f.Type)
		}
		seen[f.Type], seen["ext:"+f.Ext] = true, true
		if f.Write == nil || f.Inspect == nil || f.QemuDriver == "" || f.MediaType == "" || f.Description == "" {
			t.Errorf("row %q is incomplete", f.Type)
		}
		if !strings.HasPrefix(f.MediaType, "application/vnd.tinyvm-oci.disk.") {
			t.Errorf("row %q: media type %q", f.Type, f.MediaType)
		}
		if f.FileName() != "512-byte-vm."+f.Ext {
			t.Errorf("row %q: file name %q", f.Type, f.FileName())
		}
	}
}

func TestParse(t *testing.T) {
	all, err := Parse("")
	if err != nil || len(all) != len(Types) {
		t.Fatalf("Parse(\"\") = %d formats, %v", len(all), err)
	}
	last := Types[len(Types)-1].Type
	got, err := Parse(" " + strings.ToUpper(last) + ",raw,raw")
	if err != nil || len(got) != min(2, len(Types)) || got[0].Type != "raw" {
		t.Errorf("Parse keeps table order without duplicates: %v, %v", got, err)
	}
	_, err = Parse("raw,nope")
	if err == nil || !strings.Contains(err.Error(), `unknown format "nope"`) || !strings.Contains(err.Error(), strings.Join(Names(), ", ")) {
		t.Errorf("unknown format error %v does not list the known ones", err)
	}
}
