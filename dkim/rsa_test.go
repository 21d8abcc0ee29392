package dkim

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"os"
	"testing"
	"time"
)

// fastRSA returns libcrypto's signer for key, skipping the test where this
// build or machine has none; with PENSTOCK_REQUIRE_LIBCRYPTO=1 (CI) a cgo
// build on Linux without it fails instead.
func fastRSA(t testing.TB, key *rsa.PrivateKey) crypto.Signer {
	t.Helper()
	if _, err := libcrypto(); err != nil {
		if libcryptoBuilt && os.Getenv("PENSTOCK_REQUIRE_LIBCRYPTO") == "1" {
			t.Fatalf("libcrypto required: %v", err)
		}
		t.Skipf("no libcrypto: %v", err)
	}
	s, err := newLibcryptoRSA(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLibcryptoRSAMatchesGo: libcrypto's PKCS#1 v1.5 SHA-256 signatures
// are byte for byte Go's (the scheme is deterministic) and verify with
// crypto/rsa; other hashes and PSS, which libcrypto is not asked to make,
// still verify.
func TestLibcryptoRSAMatchesGo(t *testing.T) {
	key := rsaKeys()[0].(*rsa.PrivateKey)
	fast := fastRSA(t, key)
	if !key.PublicKey.Equal(fast.Public()) {
		t.Fatal("public key differs")
	}
	for i := range 5 {
		digest := sha256.Sum256([]byte{byte(i)})
		got, err := fast.Sign(nil, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		want, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("digest %d: libcrypto and Go signatures differ", i)
		}
		if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], got); err != nil {
			t.Errorf("digest %d: %v", i, err)
		}
	}
	d512 := sha512.Sum512([]byte("x"))
	sig, err := fast.Sign(nil, d512[:], crypto.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA512, d512[:], sig); err != nil {
		t.Errorf("SHA-512: %v", err)
	}
	d256 := sha256.Sum256([]byte("x"))
	pss := &rsa.PSSOptions{Hash: crypto.SHA256}
	sig, err = fast.Sign(rand.Reader, d256[:], pss)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(&key.PublicKey, crypto.SHA256, d256[:], sig, pss); err != nil {
		t.Errorf("PSS: %v", err)
	}
}

// TestNewSignsRSAWithLibcrypto: the keys New loads sign with libcrypto
// whenever it can be used, and with crypto/rsa only where it cannot (a
// static build); RSAImplementation says which.
func TestNewSignsRSAWithLibcrypto(t *testing.T) {
	e := newEnv(t)
	file := e.key("rsa.pem", rsaKeys()[0], "r1", "example.com")
	s := e.signer(keyConf("example.com", "r1", file, ""))
	_, err := libcrypto()
	_, goKey := s.Keys()[0].signer.(*rsa.PrivateKey)
	if goKey != (err != nil) {
		t.Errorf("libcrypto error %v, key signs with crypto/rsa: %v", err, goKey)
	}
	impl := RSAImplementation()
	if (err == nil) != bytes.HasPrefix([]byte(impl), []byte("libcrypto (OpenSSL 3")) {
		t.Errorf("RSAImplementation %q with libcrypto error %v", impl, err)
	}
}

// TestSignVerifyBothRSAPaths: whole messages signed by each RSA path verify
// with go-msgauth, and fail once the body changes.
func TestSignVerifyBothRSAPaths(t *testing.T) {
	key := rsaKeys()[1].(*rsa.PrivateKey)
	for name, signer := range map[string]func(t *testing.T) crypto.Signer{
		"go":        func(*testing.T) crypto.Signer { return key },
		"libcrypto": func(t *testing.T) crypto.Signer { return fastRSA(t, key) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			file := e.key("rsa.pem", key, "r1", "example.com")
			s := e.signer(keyConf("example.com", "r1", file, ""))
			s.keys[0].signer = signer(t)
			for _, body := range []string{"Hello\n", ".dot\n..two\n", "Grüße\n\n\n", ""} {
				msg := crlfText(header + "\n" + body)
				sig, res, err := s.Sign(msg, time.Now(), "")
				if err != nil || !res.Signed() {
					t.Fatalf("%+v %v", res, err)
				}
				if err := e.allValid(append(bytes.Clone(sig), msg...), 1); err != nil {
					t.Errorf("body %q: %v", body, err)
				}
				changed := append(bytes.Clone(sig), append(msg, "tampered\r\n"...)...)
				if vs := e.verify(changed); len(vs) != 1 || vs[0].Err == nil {
					t.Errorf("body %q: verifies after a line was appended", body)
				}
			}
		})
	}
}

// BenchmarkRSASign compares the two RSA paths on one 2048-bit key.
func BenchmarkRSASign(b *testing.B) {
	key := rsaKeys()[0].(*rsa.PrivateKey)
	digest := sha256.Sum256([]byte("x"))
	for name, s := range map[string]func(b *testing.B) crypto.Signer{
		"go":        func(*testing.B) crypto.Signer { return key },
		"libcrypto": func(b *testing.B) crypto.Signer { return fastRSA(b, key) },
	} {
		b.Run(name, func(b *testing.B) {
			signer := s(b)
			done := reportCPU(b)
			for b.Loop() {
				if _, err := signer.Sign(nil, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			done()
		})
	}
}
