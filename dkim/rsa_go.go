//go:build !(cgo && linux)

package dkim

import (
	"crypto"
	"crypto/rsa"
	"errors"
)

// Without cgo (a static build) or off Linux, crypto/rsa makes every RSA
// signature.
const libcryptoBuilt = false

var errNoLibcrypto = errors.New("built without cgo")

func libcrypto() (string, error) { return "", errNoLibcrypto }

func newLibcryptoRSA(*rsa.PrivateKey) (crypto.Signer, error) { return nil, errNoLibcrypto }
