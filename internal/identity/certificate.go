package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/fips140"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is a SHA-1 thumbprint by definition (RFC 7515 §4.1.7); it names, it does not protect.
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// CertificateCredential is a certificate whose private key a service
// principal proves it holds by signing a client assertion: Keyward keeps
// only the certificate (Graph's keyCredentials).
type CertificateCredential struct {
	PrincipalID string    `json:"principalId"`
	KeyID       string    `json:"keyId"`
	DisplayName string    `json:"displayName"`
	Thumbprint  string    `json:"customKeyIdentifier"` // SHA-1, hex upper case, as Graph shows it
	NotBefore   time.Time `json:"startDateTime"`
	NotAfter    time.Time `json:"endDateTime"`
	DER         []byte    `json:"key"`
}

const (
	kindCertificate = "certificateCredential"
	// maxCertificates bounds a principal's keyCredentials, as Entra does.
	maxCertificates = 20
)

// ParseCertificateCredential checks der is an X.509 certificate with an
// RSA (at least 2048 bits) or EC public key.
func ParseCertificateCredential(der []byte, displayName string) (CertificateCredential, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return CertificateCredential{}, fault.Invalidf("the key credential is not a DER X.509 certificate: %v", err)
	}
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return CertificateCredential{}, fault.Invalidf("the certificate's RSA key is shorter than 2048 bits")
		}
	case *ecdsa.PublicKey:
	default:
		return CertificateCredential{}, fault.Invalidf("the certificate's key must be RSA or EC")
	}
	var sum [sha1.Size]byte
	fips140.WithoutEnforcement(func() { sum = sha1.Sum(der) }) //nolint:gosec // see import; FIPS mode allows a name
	if displayName == "" {
		displayName = cert.Subject.String()
	}
	return CertificateCredential{
		KeyID: uuid.NewString(), DisplayName: displayName, Thumbprint: fmt.Sprintf("%X", sum[:]),
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), DER: der,
	}, nil
}

// SetCertificates makes a service principal's certificate credentials
// those of keep (by key id) plus add, as a Graph PATCH of keyCredentials.
func (d *Directory) SetCertificates(ctx context.Context, principalID string, keep []string, add []CertificateCredential) error {
	p, err := d.Get(ctx, principalID)
	if err != nil {
		return err
	}
	if p.Kind != store.KindServicePrincipal {
		return fault.Invalidf("only service principals have certificate credentials")
	}
	if len(keep)+len(add) > maxCertificates {
		return fault.Invalidf("a service principal has at most %d certificate credentials", maxCertificates)
	}
	return d.store.Update(ctx, func(tx store.Tx) error {
		old, err := tx.ListObjects(ctx, kindCertificate, principalID+"/")
		if err != nil {
			return err
		}
		kept := 0
		for _, o := range old {
			if slices.Contains(keep, strings.TrimPrefix(o.ID, principalID+"/")) {
				kept++
				continue
			}
			if err := tx.DeleteObject(ctx, kindCertificate, o.ID); err != nil {
				return err
			}
		}
		if kept != len(keep) {
			return fault.Invalidf("keyCredentials names a keyId the service principal does not have")
		}
		for _, c := range add {
			c.PrincipalID = principalID
			data, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if err := tx.PutObject(ctx, &store.Object{Kind: kindCertificate, ID: principalID + "/" + c.KeyID, Data: data}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Certificates lists a principal's certificate credentials.
func (d *Directory) Certificates(ctx context.Context, principalID string) ([]CertificateCredential, error) {
	var objs []*store.Object
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		objs, err = tx.ListObjects(ctx, kindCertificate, principalID+"/")
		return err
	})
	out := []CertificateCredential{}
	for _, o := range objs {
		var c CertificateCredential
		if json.Unmarshal(o.Data, &c) == nil {
			out = append(out, c)
		}
	}
	return out, err
}

// thumbprintHeader reports whether a client assertion names a certificate
// (x5t#S256 or x5t): such assertions are signed by the client itself, not
// by a federated issuer.
func thumbprintHeader(t *jwt.Token) (sha256Print, sha1Print []byte, ok bool) {
	dec := func(name string) []byte {
		s, _ := t.Header[name].(string)
		if s == "" {
			return nil
		}
		// MSAL encodes with padding and the standard alphabet, RFC 7515 says
		// base64url: accept both.
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				return b
			}
		}
		return []byte{}
	}
	sha256Print, sha1Print = dec("x5t#S256"), dec("x5t")
	return sha256Print, sha1Print, sha256Print != nil || sha1Print != nil
}

// authenticateCertificate verifies a client assertion signed with the key
// of one of p's certificates: issuer and subject are the client id, the
// audience is the token endpoint, the certificate is valid now, and the
// assertion's id has not been seen before.
func (f *Federation) authenticateCertificate(ctx context.Context, p *Principal, assertion string, sha256Print, sha1Print []byte, audiences []string) error {
	certs, err := f.dir.Certificates(ctx, p.ID)
	if err != nil {
		return err
	}
	var match *x509.Certificate
	for _, c := range certs {
		s256 := sha256.Sum256(c.DER)
		var s1 [sha1.Size]byte
		fips140.WithoutEnforcement(func() { s1 = sha1.Sum(c.DER) }) //nolint:gosec // see import; FIPS mode allows a name
		if (sha256Print != nil && slices.Equal(sha256Print, s256[:])) || (sha1Print != nil && slices.Equal(sha1Print, s1[:])) {
			if match, err = x509.ParseCertificate(c.DER); err != nil {
				return err
			}
			break
		}
	}
	if match == nil {
		return fmt.Errorf("no certificate credential with the assertion's thumbprint")
	}
	now := f.now()
	if now.Before(match.NotBefore) || now.After(match.NotAfter) {
		return fmt.Errorf("the certificate is not valid now (%s to %s)", match.NotBefore.Format(time.RFC3339), match.NotAfter.Format(time.RFC3339))
	}
	var claims jwt.RegisteredClaims
	_, err = jwt.ParseWithClaims(assertion, &claims, func(*jwt.Token) (any, error) { return match.PublicKey, nil },
		jwt.WithValidMethods([]string{"PS256", "RS256", "ES256", "ES384"}), jwt.WithIssuer(p.AppID), jwt.WithSubject(p.AppID),
		jwt.WithExpirationRequired(), jwt.WithLeeway(clockSkew), jwt.WithTimeFunc(f.now))
	if err != nil {
		return err
	}
	if claims.ExpiresAt.Sub(now) > maxAssertionLife {
		return fmt.Errorf("the assertion lives longer than %s", maxAssertionLife)
	}
	if !slices.ContainsFunc(claims.Audience, func(a string) bool { return slices.Contains(audiences, a) }) {
		return fmt.Errorf("audience %v is not the token endpoint", claims.Audience)
	}
	if claims.ID == "" {
		return fmt.Errorf("the assertion has no jti")
	}
	first, err := f.dir.firstUse(ctx, p.ID, claims.ID, claims.ExpiresAt.Add(clockSkew), now)
	if err != nil {
		return err
	}
	if !first {
		return fmt.Errorf("the assertion was used before")
	}
	return nil
}

// maxAssertionLife bounds how far ahead a self-signed assertion may expire,
// so the record of used assertions stays small.
const maxAssertionLife = time.Hour

const kindAssertion = "usedAssertion"

// firstUse records that principalID used the assertion id until it expires
// and reports whether it had not been used before. The record is in the
// store, so a restart does not reopen a replay window; expired records of
// the principal are dropped as it goes.
func (d *Directory) firstUse(ctx context.Context, principalID, id string, until, now time.Time) (bool, error) {
	first := false
	err := d.store.Update(ctx, func(tx store.Tx) error {
		used, err := tx.ListObjects(ctx, kindAssertion, strings.ToLower(principalID+"/"))
		if err != nil {
			return err
		}
		key := strings.ToLower(principalID + "/" + id)
		for _, o := range used {
			exp, err := time.Parse(time.RFC3339Nano, string(o.Data))
			if err != nil || now.After(exp) {
				if err := tx.DeleteObject(ctx, kindAssertion, o.ID); err != nil {
					return err
				}
				continue
			}
			if o.ID == key {
				return nil
			}
		}
		first = true
		return tx.PutObject(ctx, &store.Object{Kind: kindAssertion, ID: key, Data: []byte(until.UTC().Format(time.RFC3339Nano))})
	})
	return first, err
}
