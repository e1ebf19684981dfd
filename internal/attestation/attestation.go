// Package attestation verifies attestation tokens: JWTs in which an
// attestation authority (Microsoft Azure Attestation, or any issuer that
// publishes OpenID metadata) vouches for what a workload runs. Secure key
// release reads their issuer and claims, and takes the workload's
// encryption key from x-ms-runtime.keys.
package attestation

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/oidc"
	"github.com/keyward/keyward/internal/releasepolicy"
)

// MaxTokenSize bounds a token: MAA's are a few KiB, with the runtime keys
// and the TEE's claims.
const MaxTokenSize = 64 << 10

// ErrToken refuses a token that cannot be verified, in Azure's words. The
// reason (an unreachable authority, a bad signature, an expiry) is kept
// for the server log.
var ErrToken = fault.New(fault.Forbidden, "Forbidden", "Target environment attestation statement cannot be verified.")

// ErrNoRuntimeKey is a verified token that names no key to release to.
var ErrNoRuntimeKey = fault.New(fault.Invalid, "BadParameter",
	"The attestation token carries no RSA encryption key (kty RSA, with key_ops encrypt or use enc, and a kid) in x-ms-runtime.keys.")

// Token is a verified attestation token.
type Token struct {
	Issuer string
	// Claims are the token's claims, numbers kept as json.Number.
	Claims map[string]any
	// RuntimeKey is the first RSA encryption key of x-ms-runtime.keys:
	// the workload's, which the released key is wrapped for.
	RuntimeKey   *rsa.PublicKey
	RuntimeKeyID string
}

// Verifier checks tokens against their issuers' published keys.
type Verifier struct {
	keys *oidc.Keys
	now  func() time.Time
}

// NewVerifier returns a verifier that fetches authorities' metadata and
// keys with client (under the server's egress policy).
func NewVerifier(client *http.Client, now func() time.Time) *Verifier {
	// Azure's own attestation mock publishes no issuer in its metadata.
	return &Verifier{keys: oidc.NewKeys(client, now, true), now: now}
}

// leeway allows for clocks a little apart.
const leeway = time.Minute

var methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// Verify checks token's signature with its issuer's keys, its times, and
// that it carries a key to release to. Its issuer must be one of
// authorities (a key's release policy names them): no other issuer's
// metadata is ever fetched, whatever a token claims.
func (v *Verifier) Verify(ctx context.Context, token string, authorities []string) (*Token, error) {
	if len(token) == 0 || len(token) > MaxTokenSize {
		return nil, ErrToken.With("target must be an attestation token (a JWT) of at most %d bytes.", MaxTokenSize)
	}
	var unverified jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &unverified); err != nil {
		return nil, fault.Wrap(ErrToken, err)
	}
	issuer, _ := unverified["iss"].(string)
	if u, err := url.Parse(issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fault.Wrap(ErrToken, fmt.Errorf("the token's issuer %q is not an https URL", issuer))
	}
	if !slices.ContainsFunc(authorities, func(a string) bool { return releasepolicy.SameAuthority(a, issuer) }) {
		return nil, fault.Wrap(ErrToken, fmt.Errorf("the key's release policy names no authority %.200q", issuer))
	}
	// The keys of the authority's one spelling, whatever the token's.
	set, err := v.keys.For(ctx, releasepolicy.CanonicalAuthority(issuer))
	if err != nil {
		return nil, fault.Wrap(ErrToken, err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		for _, k := range set.Keys {
			if (kid == "" && len(set.Keys) == 1) || (kid != "" && k.KeyID == kid) {
				return k.Key, nil
			}
		}
		return nil, fmt.Errorf("no key %q at %s", kid, issuer)
	}, jwt.WithValidMethods(methods), jwt.WithIssuer(issuer), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway), jwt.WithTimeFunc(v.now), jwt.WithJSONNumber())
	if err != nil {
		return nil, fault.Wrap(ErrToken, err)
	}
	key, kid, ok := runtimeKey(claims)
	if !ok {
		return nil, ErrNoRuntimeKey
	}
	return &Token{Issuer: issuer, Claims: claims, RuntimeKey: key, RuntimeKeyID: kid}, nil
}

// runtimeKey picks, as Azure does, the first suitable key of the
// top-level x-ms-runtime.keys: an RSA key with a kid whose use is enc or
// whose key_ops include encrypt. (The key under x-ms-isolation-tee is the
// TEE's own, not one to release to.)
func runtimeKey(claims map[string]any) (*rsa.PublicKey, string, bool) {
	runtime, _ := claims["x-ms-runtime"].(map[string]any)
	keys, _ := runtime["keys"].([]any)
	for _, raw := range keys {
		k, _ := raw.(map[string]any)
		kty, _ := k["kty"].(string)
		kid, _ := k["kid"].(string)
		use, _ := k["use"].(string)
		if kty != "RSA" || kid == "" || (use != "enc" && !contains(k["key_ops"], "encrypt")) {
			continue
		}
		n, err1 := decodeB64(k["n"])
		e, err2 := decodeB64(k["e"])
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			continue
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if bits := pub.N.BitLen(); bits < 2048 || bits > 8192 || pub.E < 3 || pub.E%2 == 0 {
			continue
		}
		return pub, kid, true
	}
	return nil, "", false
}

func contains(list any, want string) bool {
	items, _ := list.([]any)
	for _, it := range items {
		if s, _ := it.(string); s == want {
			return true
		}
	}
	return false
}

func decodeB64(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("not a string")
	}
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}
