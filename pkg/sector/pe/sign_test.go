package pe

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/pe"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// testSigner makes a throw-away RSA key and self-signed certificate.
func testSigner(t *testing.T) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x5EC0B007),
		Subject:      pkix.Name{CommonName: "tinyvm-oci test signer"},
		NotBefore:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2044, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func TestSignLayout(t *testing.T) {
	key, cert := testSigner(t)
	img, err := Write(AMD64, code)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := Sign(img, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signed[:len(img)], withSecurityDir(img, signed)) {
		t.Errorf("signing changed the image beyond the certificate table entry")
	}
	f, err := pe.NewFile(bytes.NewReader(signed))
	if err != nil {
		t.Fatalf("debug/pe: %v", err)
	}
	dir := f.OptionalHeader.(*pe.OptionalHeader64).DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	if int(dir.VirtualAddress) != len(img) || int(dir.VirtualAddress+dir.Size) != len(signed) || dir.Size%certAlign != 0 {
		t.Errorf("certificate table at %d+%d in a %d-byte file", dir.VirtualAddress, dir.Size, len(signed))
	}
	if got := binary.LittleEndian.Uint32(signed[len(img):]); got != dir.Size {
		t.Errorf("dwLength %d, want %d", got, dir.Size)
	}
	// Authenticode's hash leaves out the directory entry, so the signed
	// image hashes as the unsigned one did.
	if !bytes.Equal(Hash(signed[:len(img)]), Hash(img)) {
		t.Errorf("the hash covers the certificate table entry")
	}
	// PKCS #1 v1.5 signatures are deterministic: so are signed images.
	if again, _ := Sign(img, key, cert); !bytes.Equal(again, signed) {
		t.Errorf("two signatures of one image differ")
	}
	if _, err := Sign(signed, key, cert); !errors.Is(err, ErrSigned) {
		t.Errorf("signing twice: got %v, want ErrSigned", err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(img, ec, cert); err == nil || !strings.Contains(err.Error(), "RSA") {
		t.Errorf("ECDSA key: got %v, want an error asking for RSA", err)
	}
	if _, err := Sign([]byte("MZ"), key, cert); err == nil {
		t.Errorf("a 2-byte file was signed")
	}
}

// withSecurityDir returns img with the certificate table entry of signed.
func withSecurityDir(img, signed []byte) []byte {
	out := bytes.Clone(img)
	copy(out[securityDirOff:securityDirOff+8], signed[securityDirOff:])
	return out
}

// TestSbverify checks the signature with sbsigntool, an independent
// Authenticode verifier (OpenSSL's PKCS #7 code, as EDK II uses).
func TestSbverify(t *testing.T) {
	sbverify := tooltest.Require(t, "sbverify", tooltest.Sbsigntool)
	key, cert := testSigner(t)
	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Machine{AMD64, ARM64} {
		img, err := Write(m, code)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := Sign(img, key, cert)
		if err != nil {
			t.Fatal(err)
		}
		app := filepath.Join(dir, "app.efi")
		if err := os.WriteFile(app, signed, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sbverify, "--cert", certFile, app).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Signature verification OK") {
			t.Errorf("machine 0x%X: sbverify: %v\n%s", m, err, out)
		}
		// A changed byte of code breaks the signature.
		signed[HeaderSize] ^= 0xFF
		if err := os.WriteFile(app, signed, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sbverify, "--cert", certFile, app).CombinedOutput(); err == nil {
			t.Errorf("machine 0x%X: sbverify accepts a changed image:\n%s", m, out)
		}
	}
}
