package dkim

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
)

// RSA signing is most of the CPU a signed message costs: Go's crypto/rsa
// takes about three times as long per 2048-bit signature as OpenSSL's
// libcrypto on the same core. So where the binary is built with cgo on
// Linux and libcrypto.so.3 can be opened at run time, libcrypto makes the
// RSA signatures; a static build, or a machine without it, signs in Go.
// Both make the same bytes: RSASSA-PKCS1-v1_5 is deterministic.

// RSAImplementation names what makes this process's RSA signatures, for
// `penstock version` and the start log: libcrypto and its version, or Go
// and why libcrypto is not used.
func RSAImplementation() string {
	v, err := libcrypto()
	if err != nil {
		return fmt.Sprintf("Go crypto/rsa (libcrypto not used: %v)", err)
	}
	return "libcrypto (" + v + ")"
}

// rsaSigner returns the crypto.Signer that makes key's signatures:
// libcrypto's when it is there and its signature of a test digest verifies
// with Go's crypto/rsa; else key itself, with why (only when libcrypto was
// loaded but failed this key: its absence is no news for every key).
func rsaSigner(key *rsa.PrivateKey) (crypto.Signer, error) {
	if _, err := libcrypto(); err != nil {
		return key, nil
	}
	s, err := newLibcryptoRSA(key)
	if err != nil {
		return key, err
	}
	digest := sha256.Sum256([]byte("penstock dkim libcrypto self-test"))
	sig, err := s.Sign(nil, digest[:], crypto.SHA256)
	if err == nil {
		err = rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig)
	}
	if err != nil {
		return key, fmt.Errorf("libcrypto self-test: %v", err)
	}
	return s, nil
}
