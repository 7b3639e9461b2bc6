package pe

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// Offsets in the optional header that Authenticode's hash leaves out.
const (
	checksumOffset = peOffset + 4 + 20 + 64        // CheckSum
	securityDirOff = peOffset + 4 + 20 + 112 + 4*8 // data directory 4: the certificate table
	certAlign      = 8                             // attribute certificates are 8-byte aligned
)

// WIN_CERTIFICATE values.
const (
	winCertRevision2  = 0x0200 // WIN_CERT_REVISION_2_0
	winCertTypePKCS7  = 0x0002 // WIN_CERT_TYPE_PKCS_SIGNED_DATA
	winCertHeaderSize = 8
)

// Object identifiers of PKCS #7, PKCS #9 and Authenticode.
var (
	oidSignedData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidContentType     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSpcIndirectData = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 4}
	oidSpcPEImageData  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 15}
)

// ErrSigned is returned for an image that already carries a signature.
var ErrSigned = errors.New("pe: the image is already signed")

// Sign returns image, as Write makes it, with an Authenticode signature
// appended: a PKCS #7 SignedData over the image's SHA-256 Authenticode
// hash, signed by key (RSA) for cert, in the attribute certificate table.
// This is what UEFI Secure Boot checks against its db. RSA PKCS #1 v1.5
// signatures are deterministic, so the signed bytes are reproducible.
func Sign(image []byte, key crypto.Signer, cert *x509.Certificate) ([]byte, error) {
	if len(image) < HeaderSize || binary.LittleEndian.Uint32(image[lfanewOffset:]) != peOffset {
		return nil, errors.New("pe: not an image written by pe.Write")
	}
	if binary.LittleEndian.Uint64(image[securityDirOff:]) != 0 {
		return nil, ErrSigned
	}
	if _, ok := key.Public().(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("pe: signing key is %T: use an RSA key", key.Public())
	}
	out := slices.Clone(image)
	for len(out)%certAlign != 0 {
		out = append(out, 0)
	}
	digest := Hash(out)
	der, err := signedData(digest, key, cert)
	if err != nil {
		return nil, err
	}
	size := (winCertHeaderSize + len(der) + certAlign - 1) &^ (certAlign - 1)
	binary.LittleEndian.PutUint32(out[securityDirOff:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[securityDirOff+4:], uint32(size))
	out = binary.LittleEndian.AppendUint32(out, uint32(size))
	out = binary.LittleEndian.AppendUint16(out, winCertRevision2)
	out = binary.LittleEndian.AppendUint16(out, winCertTypePKCS7)
	out = append(out, der...)
	out = append(out, make([]byte, size-winCertHeaderSize-len(der))...)
	return out, nil
}

// Hash is the SHA-256 Authenticode digest of an unsigned image: every
// byte except the CheckSum field and the certificate table's directory
// entry. (The sections follow the headers in file order and nothing
// trails them, so this is the spec's ordered hash.)
func Hash(image []byte) []byte {
	h := sha256.New()
	h.Write(image[:checksumOffset])
	h.Write(image[checksumOffset+4 : securityDirOff])
	h.Write(image[securityDirOff+8:])
	return h.Sum(nil)
}

// DER building blocks.
func tlv(tag byte, content ...[]byte) []byte {
	body := bytes.Join(content, nil)
	n := len(body)
	var length []byte
	switch {
	case n < 0x80:
		length = []byte{byte(n)}
	case n < 0x100:
		length = []byte{0x81, byte(n)}
	case n < 0x10000:
		length = []byte{0x82, byte(n >> 8), byte(n)}
	default:
		length = []byte{0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(append([]byte{tag}, length...), body...)
}

func seq(content ...[]byte) []byte { return tlv(0x30, content...) }
func set(content ...[]byte) []byte { return tlv(0x31, content...) }

func oid(o asn1.ObjectIdentifier) []byte {
	b, _ := asn1.Marshal(o) // a constant OID always marshals
	return b
}

func algorithm(o asn1.ObjectIdentifier) []byte { return seq(oid(o), []byte{0x05, 0x00}) }

// signedData builds the PKCS #7 ContentInfo (RFC 2315) that Authenticode
// puts in the certificate table.
func signedData(digest []byte, key crypto.Signer, cert *x509.Certificate) ([]byte, error) {
	// SpcIndirectDataContent: the PE image data attribute (no flags, an
	// empty file link) and the image digest.
	spcPE := seq(tlv(0x03, []byte{0}), tlv(0xA0, tlv(0xA2, tlv(0x80))))
	indirect := seq(seq(oid(oidSpcPEImageData), spcPE), seq(algorithm(oidSHA256), tlv(0x04, digest)))
	// The message digest covers the content octets of the SEQUENCE.
	body := indirect[len(indirect)-contentLen(indirect):]
	md := sha256.Sum256(body)
	attrs := [][]byte{
		seq(oid(oidContentType), set(oid(oidSpcIndirectData))),
		seq(oid(oidMessageDigest), set(tlv(0x04, md[:]))),
	}
	slices.SortFunc(attrs, bytes.Compare) // DER orders a SET OF
	signed := sha256.Sum256(set(attrs...))
	sig, err := key.Sign(rand.Reader, signed[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("pe: sign: %w", err)
	}
	serial, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		return nil, fmt.Errorf("pe: certificate serial: %w", err)
	}
	signer := seq(
		[]byte{0x02, 0x01, 0x01}, // version 1
		seq(cert.RawIssuer, serial),
		algorithm(oidSHA256),
		tlv(0xA0, attrs...), // [0] IMPLICIT authenticatedAttributes
		algorithm(oidRSAEncryption),
		tlv(0x04, sig),
	)
	sd := seq(
		[]byte{0x02, 0x01, 0x01},
		set(algorithm(oidSHA256)),
		seq(oid(oidSpcIndirectData), tlv(0xA0, indirect)),
		tlv(0xA0, cert.Raw), // [0] IMPLICIT certificates
		set(signer),
	)
	return seq(oid(oidSignedData), tlv(0xA0, sd)), nil
}

// contentLen is the length of a DER element's content octets.
func contentLen(der []byte) int {
	if der[1] < 0x80 {
		return int(der[1])
	}
	n := 0
	for _, b := range der[2 : 2+int(der[1]&0x7F)] {
		n = n<<8 | int(b)
	}
	return n
}

// ParseKeyPair reads a signing key and its certificate from PEM: an
// unencrypted RSA key (PKCS #1 or PKCS #8) and an X.509 certificate whose
// public key is the key's. Sign takes the result.
func ParseKeyPair(keyPEM, certPEM []byte) (crypto.Signer, *x509.Certificate, error) {
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("pe: the key is not PEM")
	}
	if x509.IsEncryptedPEMBlock(kb) || kb.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, nil, errors.New("pe: the key is encrypted: decrypt it first (openssl pkey -in KEY -out PLAIN)")
	}
	var key crypto.Signer
	switch kb.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("pe: key: %w", err)
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("pe: key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("pe: the key is %T: Authenticode signing here takes RSA keys", k)
		}
		key = rk
	default:
		return nil, nil, fmt.Errorf("pe: PEM block %q is not a private key", kb.Type)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("pe: the certificate is not a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("pe: certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, nil, errors.New("pe: the certificate is not for this key")
	}
	return key, cert, nil
}
