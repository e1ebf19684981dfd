//go:build !cgo || nopkcs11

package domain

import (
	"context"
	"errors"
)

// PKCS11Config names a token and the key in it that seals domain keys.
type PKCS11Config struct {
	Module     string
	TokenLabel string
	PIN        string
	KeyLabel   string
}

// PKCS11Seal is unavailable in this build.
type PKCS11Seal struct{}

// ErrPKCS11PIN is returned when the token refuses the PIN.
var ErrPKCS11PIN = errors.New("domain: the PKCS#11 token refused the PIN")

var errNoPKCS11 = errors.New("domain: this keyward was built without PKCS#11 support (cgo disabled or the nopkcs11 tag)")

// OpenPKCS11Seal reports that PKCS#11 is not compiled in.
func OpenPKCS11Seal(PKCS11Config) (*PKCS11Seal, error) { return nil, errNoPKCS11 }

// Seal implements Seal.
func (*PKCS11Seal) Seal(context.Context, []byte, []byte) ([]byte, error) { return nil, errNoPKCS11 }

// Open implements Seal.
func (*PKCS11Seal) Open(context.Context, []byte, []byte) ([]byte, error) { return nil, errNoPKCS11 }

// Close implements io.Closer.
func (*PKCS11Seal) Close() error { return nil }
