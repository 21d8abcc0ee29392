//go:build cgo && linux

package dkim

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>

// OpenSSL 3's libcrypto is opened at run time, not linked: a machine
// without it still runs this binary (RSA then signs in Go), and building
// needs no OpenSSL headers. The few functions used are declared here with
// their OpenSSL 3 signatures; the opaque types are void.
static void *(*lc_d2i_PrivateKey)(int, void **, const unsigned char **, long);
static void (*lc_EVP_PKEY_free)(void *);
static void *(*lc_EVP_PKEY_CTX_new)(void *, void *);
static void (*lc_EVP_PKEY_CTX_free)(void *);
static int (*lc_EVP_PKEY_sign_init)(void *);
static int (*lc_EVP_PKEY_CTX_set_rsa_padding)(void *, int);
static int (*lc_EVP_PKEY_CTX_set_signature_md)(void *, const void *);
static const void *(*lc_EVP_sha256)(void);
static int (*lc_EVP_PKEY_sign)(void *, unsigned char *, size_t *, const unsigned char *, size_t);
static unsigned long (*lc_ERR_get_error)(void);
static void (*lc_ERR_error_string_n)(unsigned long, char *, size_t);
static unsigned long (*lc_OpenSSL_version_num)(void);
static const char *(*lc_OpenSSL_version)(int);

#define LC_EVP_PKEY_RSA 6      // NID_rsaEncryption
#define LC_RSA_PKCS1_PADDING 1

// lc_open loads libcrypto.so.3 and its functions; it returns NULL or why not.
static const char *lc_open(void) {
	void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return dlerror();
	}
#define LC_SYM(name) \
	if ((*(void **)&lc_##name = dlsym(h, #name)) == NULL) return "libcrypto.so.3 has no " #name;
	LC_SYM(OpenSSL_version_num)
	LC_SYM(OpenSSL_version)
	LC_SYM(d2i_PrivateKey)
	LC_SYM(EVP_PKEY_free)
	LC_SYM(EVP_PKEY_CTX_new)
	LC_SYM(EVP_PKEY_CTX_free)
	LC_SYM(EVP_PKEY_sign_init)
	LC_SYM(EVP_PKEY_CTX_set_rsa_padding)
	LC_SYM(EVP_PKEY_CTX_set_signature_md)
	LC_SYM(EVP_sha256)
	LC_SYM(EVP_PKEY_sign)
	LC_SYM(ERR_get_error)
	LC_SYM(ERR_error_string_n)
#undef LC_SYM
	// Before 3.0 the padding and digest setters were macros, not symbols:
	// dlsym would not have found them, but say so plainly.
	if ((lc_OpenSSL_version_num() >> 28) < 3) {
		return "libcrypto.so.3 is older than OpenSSL 3.0";
	}
	return NULL;
}

static const char *lc_version(void) { return lc_OpenSSL_version(0); }

// lc_error returns the oldest error of this thread's OpenSSL error queue as
// text and empties the queue, so that a later call starts clean.
static void lc_error(char *buf, size_t n) {
	unsigned long e = lc_ERR_get_error();
	buf[0] = 0;
	if (e != 0) {
		lc_ERR_error_string_n(e, buf, n);
	}
	while (lc_ERR_get_error() != 0) {
	}
}

// lc_rsa_key reads a PKCS#1 DER RSA private key; on failure it writes
// why into errbuf (in the same C call: OpenSSL's error queue is per thread).
static void *lc_rsa_key(const unsigned char *der, long n, char *errbuf, size_t errlen) {
	void *pkey = lc_d2i_PrivateKey(LC_EVP_PKEY_RSA, NULL, &der, n);
	if (pkey == NULL) {
		lc_error(errbuf, errlen);
	}
	return pkey;
}

static void lc_free_key(void *pkey) { lc_EVP_PKEY_free(pkey); }

// lc_sign_sha256 makes an RSASSA-PKCS1-v1_5 signature of a SHA-256 digest
// into sig (*siglen bytes long; set to the signature's length). A context
// per call: an EVP_PKEY may be shared between threads, a context may not.
static int lc_sign_sha256(void *pkey, const unsigned char *digest, unsigned char *sig, size_t *siglen,
		char *errbuf, size_t errlen) {
	void *ctx = lc_EVP_PKEY_CTX_new(pkey, NULL);
	int ok = ctx != NULL &&
		lc_EVP_PKEY_sign_init(ctx) > 0 &&
		lc_EVP_PKEY_CTX_set_rsa_padding(ctx, LC_RSA_PKCS1_PADDING) > 0 &&
		lc_EVP_PKEY_CTX_set_signature_md(ctx, lc_EVP_sha256()) > 0 &&
		lc_EVP_PKEY_sign(ctx, sig, siglen, digest, 32) > 0;
	if (!ok) {
		lc_error(errbuf, errlen);
	}
	lc_EVP_PKEY_CTX_free(ctx); // NULL is allowed
	return ok;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"runtime"
	"sync"
	"unsafe"
)

const libcryptoBuilt = true

// libcrypto opens libcrypto.so.3 once and returns its version.
var libcrypto = sync.OnceValues(func() (string, error) {
	if why := C.lc_open(); why != nil {
		return "", errors.New(C.GoString(why))
	}
	return C.GoString(C.lc_version()), nil
})

// libcryptoRSA is an RSA key held by libcrypto as well as by Go: libcrypto
// makes the RSASSA-PKCS1-v1_5 SHA-256 signatures DKIM needs, Go anything
// else asked of it.
type libcryptoRSA struct {
	key  *rsa.PrivateKey
	pkey unsafe.Pointer // EVP_PKEY *, freed by a cleanup when this is dropped
}

// newLibcryptoRSA hands key to libcrypto.
func newLibcryptoRSA(key *rsa.PrivateKey) (crypto.Signer, error) {
	if _, err := libcrypto(); err != nil {
		return nil, err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	var why [256]C.char
	pkey := C.lc_rsa_key((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &why[0], C.size_t(len(why)))
	clear(der)
	if pkey == nil {
		return nil, libcryptoError("reading the key", why[:])
	}
	k := &libcryptoRSA{key: key, pkey: pkey}
	runtime.AddCleanup(k, func(p unsafe.Pointer) { C.lc_free_key(p) }, pkey)
	return k, nil
}

func (k *libcryptoRSA) Public() crypto.PublicKey { return k.key.Public() }

// Sign signs a SHA-256 digest with PKCS#1 v1.5 padding in libcrypto; other
// hashes and PSS go to crypto/rsa.
func (k *libcryptoRSA) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss || opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return k.key.Sign(rand, digest, opts)
	}
	sig := make([]byte, k.key.Size())
	n := C.size_t(len(sig))
	var why [256]C.char
	ok := C.lc_sign_sha256(k.pkey, (*C.uchar)(unsafe.Pointer(&digest[0])), (*C.uchar)(unsafe.Pointer(&sig[0])), &n,
		&why[0], C.size_t(len(why)))
	runtime.KeepAlive(k) // the cleanup must not free pkey during the call
	if ok != 1 {
		return nil, libcryptoError("signing", why[:])
	}
	return sig[:n], nil
}

// libcryptoError is an error of libcrypto, with the text it gave if any.
func libcryptoError(doing string, why []C.char) error {
	msg := C.GoString(&why[0])
	if msg == "" {
		msg = "no detail"
	}
	return errors.New("libcrypto: " + doing + ": " + msg)
}
