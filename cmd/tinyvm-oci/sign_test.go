package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/disktest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
)

// TestBuildSigned: --sign-key and --sign-cert sign both EFI applications
// on the disk's ESP, which sbverify (sbsigntool) accepts for that
// certificate; an unsigned build's applications carry no signature.
func TestBuildSigned(t *testing.T) {
	sbverify := tooltest.Require(t, "sbverify", tooltest.Sbsigntool)
	mcopy := tooltest.Require(t, "mcopy", disktest.Mtools)
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tinyvm-oci test db key"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Unix(1<<32, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, certFile := filepath.Join(dir, "db.key"), filepath.Join(dir, "db.crt")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)

	for _, signed := range []bool{true, false} {
		out := filepath.Join(dir, map[bool]string{true: "signed", false: "unsigned"}[signed])
		args := []string{"build", "-q", "-o", out, "--format", "raw"}
		if signed {
			args = append(args, "--sign-key", keyFile, "--sign-cert", certFile)
		}
		if code, _, stderr := cli(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		image := filepath.Join(out, "512-byte-vm.raw") + "@@" + strconv.FormatInt(universal.ESPFirstLBA*512, 10)
		for _, app := range []string{"BOOTX64.EFI", "BOOTAA64.EFI"} {
			file := filepath.Join(out, app)
			if b, err := exec.Command(mcopy, "-n", "-i", image, "::/EFI/BOOT/"+app, file).CombinedOutput(); err != nil {
				t.Fatalf("mcopy %s: %v\n%s", app, err, b)
			}
			b, err := exec.Command(sbverify, "--cert", certFile, file).CombinedOutput()
			if signed && err != nil {
				t.Errorf("signed %s: sbverify: %v\n%s", app, err, b)
			}
			if !signed && (err == nil || !strings.Contains(string(b), "No signature table present")) {
				t.Errorf("unsigned %s: sbverify: %v\n%s", app, err, b)
			}
		}
	}
	if code, _, stderr := cli(t, "build", "-o", filepath.Join(dir, "x"), "--sign-key", keyFile); code != 2 || !strings.Contains(stderr, "both --sign-key and --sign-cert") {
		t.Errorf("--sign-key alone: exit %d, %q", code, stderr)
	}
	if code, _, stderr := cli(t, "build", "-o", filepath.Join(dir, "y"), "--sign-key", certFile, "--sign-cert", certFile); code != 2 || !strings.Contains(stderr, "not a private key") {
		t.Errorf("a certificate as the key: exit %d, %q", code, stderr)
	}
}
