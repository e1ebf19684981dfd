package kcrypto

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/keyward/keyward/internal/fault"
)

// ParseKeyType accepts the key types of the Azure API ("RSA", "RSA-HSM",
// "EC", "EC-HSM", "oct", "oct-HSM", and the legacy "AES") and returns the
// family.
func ParseKeyType(kty string) (KeyType, error) {
	switch strings.TrimSuffix(kty, "-HSM") {
	case "RSA":
		return RSA, nil
	case "EC":
		return EC, nil
	case "oct", "AES":
		return Oct, nil
	case "ML-DSA":
		return MLDSA, nil
	case "ML-KEM":
		return MLKEM, nil
	}
	return "", fault.Invalidf("unknown key type %q: use RSA-HSM, EC-HSM or oct-HSM (or Keyward's ML-DSA and ML-KEM)", kty)
}

// Import builds a Key from a JWK that carries its private members.
func Import(j JSONWebKey) (Key, error) {
	switch j.Kty {
	case RSA:
		return importRSA(j)
	case EC:
		return importEC(j)
	case Oct:
		if len(j.K) == 0 {
			return nil, fault.Invalidf("an oct key to import needs k")
		}
		return newOct(append([]byte(nil), j.K...))
	case MLDSA, MLKEM:
		return importPQ(j)
	}
	return nil, fault.Invalidf("unknown key type %q", j.Kty)
}

// Forms of private material inside the sealed encoding. They are stored,
// so their names never change.
const (
	formPKCS8     = "pkcs8"
	formSecp256k1 = "secp256k1"
	formAES       = "aes"
)

type sealedForm struct {
	Form  string `json:"form"`
	Set   string `json:"set,omitempty"` // post-quantum keys' parameter set
	Bytes []byte `json:"bytes"`
}

// MarshalPrivate encodes k's private material for sealing under a domain
// key. The result is secret: it must be encrypted before it is stored and
// never logged.
func MarshalPrivate(k Key) ([]byte, error) {
	f, err := k.marshalPrivate()
	if err != nil {
		return nil, err
	}
	return json.Marshal(f)
}

// ParsePrivate is the inverse of MarshalPrivate.
func ParsePrivate(b []byte) (Key, error) {
	var f sealedForm
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("kcrypto: decoding private key: %w", err)
	}
	switch f.Form {
	case formAES:
		return newOct(f.Bytes)
	case formMLDSA:
		return mldsaFromSeed(Curve(f.Set), f.Bytes)
	case formMLKEM:
		return mlkemFromSeed(Curve(f.Set), f.Bytes)
	case formSecp256k1:
		return k1FromBytes(f.Bytes)
	case formPKCS8:
		parsed, err := x509.ParsePKCS8PrivateKey(f.Bytes)
		if err != nil {
			return nil, fmt.Errorf("kcrypto: decoding private key: %w", err)
		}
		switch p := parsed.(type) {
		case *rsa.PrivateKey:
			return &rsaKey{p}, nil
		case *ecdsa.PrivateKey:
			for c := range curveAlgorithm {
				if ec, ok := nistCurve(c); ok && ec == p.Curve {
					return &ecKey{priv: p, curve: c}, nil
				}
			}
		}
		return nil, fmt.Errorf("kcrypto: unexpected key type %T in sealed form", parsed)
	}
	return nil, fmt.Errorf("kcrypto: unknown sealed form %q", f.Form)
}
